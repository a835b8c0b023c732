"""Write the fuzz seed corpus: about fifty valid queries and replies, built with dnspython.

The fuzzer mutates these, so they cover what the wire reader must handle: plain and EDNS
queries (DO, CD, options, odd payloads, type 65), replies with compression, CNAME chains, SOA
in authority (NXDOMAIN and NODATA), TXT, MX, SRV, CAA, DS, an unknown type, top-bit TTLs, an
OPT between additional records, and extended rcodes. The output is deterministic (fixed IDs,
fixed seed), so re-running it leaves the committed files unchanged.

Usage: .venv/bin/python fuzz/make_corpus.py [OUTDIR]   (default: fuzz/corpus)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.OPT
import dns.rrset

_QUERIES = [
    ("www.example.com", "A", {}),
    ("www.example.com", "A", {"use_edns": 0, "want_dnssec": True}),
    ("WWW.Example.COM", "AAAA", {"use_edns": 0}),
    ("example.com", "MX", {"use_edns": 0, "payload": 512}),
    ("example.com", "TXT", {"use_edns": 0, "payload": 65535}),
    ("example.com", 65, {"use_edns": 0}),
    ("example.com", 97, {}),
    ("example.com", "ANY", {}),
    ("_sip._tcp.example.com", "SRV", {"use_edns": 0, "want_dnssec": True}),
    ("1.2.0.192.in-addr.arpa", "PTR", {}),
    (".", "NS", {"use_edns": 0, "payload": 100}),
    ("a" * 63 + ".example", "A", {}),
    (".".join(["b" * 60] * 4), "A", {}),
    ("example.com", "DS", {"use_edns": 0, "want_dnssec": True}),
    ("example.com", "CAA", {}),
    ("example.com", "TYPE65280", {}),
    ("version.bind", "TXT", {"rdclass": "CH"}),
    ("example.com", "SOA", {"use_edns": 0, "payload": 4096}),
    ("example.com", "NS", {"use_edns": 0, "payload": 4097}),
    (r"odd\000label\.dot.example", "A", {}),
    ("ipv6.example", "AAAA", {"want_dnssec": True, "payload": 1232}),
]


def _queries(rng: random.Random) -> list[bytes]:
    out = []
    for i, (name, rdtype, kwargs) in enumerate(_QUERIES):
        q = dns.message.make_query(name, rdtype, id=rng.getrandbits(16), **kwargs)  # type: ignore[arg-type]
        if i % 3 == 1:
            q.flags |= dns.flags.CD
        out.append(q.to_wire(want_shuffle=False))
    q = dns.message.make_query("cookie.example", "A", id=7, use_edns=0)
    q.use_edns(0, dns.flags.DO, 1232, options=[dns.edns.GenericOption(10, b"\x01" * 8)])
    out.append(q.to_wire(want_shuffle=False))
    q = dns.message.make_query("v1.example", "A", id=8, use_edns=1)  # EDNS version 1
    out.append(q.to_wire(want_shuffle=False))
    q = dns.message.make_query("status.example", "A", id=9)
    q.set_opcode(dns.opcode.STATUS)
    out.append(q.to_wire(want_shuffle=False))
    return out


def _response(
    qname: str, rdtype: str | int, rcode: int, *, edns: bool, mid: int
) -> dns.message.Message:
    q = dns.message.make_query(qname, rdtype, id=mid, use_edns=0 if edns else False)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    return r


def _rrset(name: str, ttl: int, rdtype: str, *texts: str) -> dns.rrset.RRset:
    return dns.rrset.from_text(name, ttl, "IN", rdtype, *texts)


def _soa(zone: str, ttl: int = 900, minimum: int = 60) -> dns.rrset.RRset:
    return _rrset(
        zone, ttl, "SOA", f"ns1.{zone} hostmaster.{zone} 2024010101 7200 900 1209600 {minimum}"
    )


def _replies(rng: random.Random) -> list[bytes]:
    out = []
    for edns in (False, True):
        r = _response("www.example.com", "A", dns.rcode.NOERROR, edns=edns, mid=rng.getrandbits(16))
        r.answer.append(_rrset("www.example.com.", 300, "CNAME", "web.example.com."))
        r.answer.append(_rrset("web.example.com.", 60, "A", "192.0.2.1", "192.0.2.2"))
        r.authority.append(_soa("example.com."))
        out.append(r.to_wire(want_shuffle=False))

    r = _response("www.example.com", "AAAA", dns.rcode.NOERROR, edns=True, mid=11)
    r.answer.append(_rrset("www.example.com.", 3600, "AAAA", "2001:db8::1"))
    r.authority.append(_rrset("example.com.", 86400, "NS", "ns1.example.com.", "ns2.example.com."))
    r.additional.append(_rrset("ns1.example.com.", 86400, "A", "192.0.2.53"))
    r.additional.append(_rrset("ns2.example.com.", 86400, "AAAA", "2001:db8::53"))
    out.append(r.to_wire(want_shuffle=False))

    for rcode, minimum in ((dns.rcode.NXDOMAIN, 60), (dns.rcode.NXDOMAIN, 2**31 + 5)):
        r = _response("nope.example.com", "A", rcode, edns=True, mid=rng.getrandbits(16))
        r.authority.append(_soa("example.com.", minimum=minimum))
        out.append(r.to_wire(want_shuffle=False))
    r = _response("nodata.example.com", "MX", dns.rcode.NOERROR, edns=False, mid=12)
    r.authority.append(_soa("example.com.", ttl=30, minimum=3600))
    out.append(r.to_wire(want_shuffle=False))

    for rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR, dns.rcode.NOTIMP):
        out.append(
            _response("x.example", "A", rcode, edns=rcode % 2 == 0, mid=rcode).to_wire(
                want_shuffle=False
            )
        )
    r = _response("x.example", "A", dns.rcode.BADVERS, edns=True, mid=16)
    out.append(r.to_wire(want_shuffle=False))

    r = _response("mail.example.com", "MX", dns.rcode.NOERROR, edns=True, mid=13)
    r.answer.append(
        _rrset("mail.example.com.", 300, "MX", "10 mx1.mail.example.com.", "20 mx2.example.net.")
    )
    r.additional.append(_rrset("mx1.mail.example.com.", 300, "A", "198.51.100.7"))
    out.append(r.to_wire(want_shuffle=False))

    r = _response("txt.example.com", "TXT", dns.rcode.NOERROR, edns=False, mid=14)
    r.answer.append(
        _rrset("txt.example.com.", 2**31 + 1, "TXT", '"v=spf1 -all"', '"a" "' + "b" * 250 + '"')
    )
    out.append(r.to_wire(want_shuffle=False))

    r = _response("_sip._tcp.example.com", "SRV", dns.rcode.NOERROR, edns=True, mid=15)
    r.answer.append(_rrset("_sip._tcp.example.com.", 60, "SRV", "0 5 5060 sip.example.com."))
    out.append(r.to_wire(want_shuffle=False))

    r = _response("example.com", "CAA", dns.rcode.NOERROR, edns=False, mid=17)
    r.answer.append(_rrset("example.com.", 60, "CAA", '0 issue "ca.example.net"'))
    out.append(r.to_wire(want_shuffle=False))

    r = _response("example.com", "DS", dns.rcode.NOERROR, edns=True, mid=18)
    r.answer.append(_rrset("example.com.", 60, "DS", "12345 13 2 " + "ab" * 32))
    out.append(r.to_wire(want_shuffle=False))

    r = _response("example.com", "TYPE65280", dns.rcode.NOERROR, edns=False, mid=19)
    r.answer.append(_rrset("example.com.", 60, "TYPE65280", r"\# 4 deadbeef"))
    out.append(r.to_wire(want_shuffle=False))

    r = _response("4.3.2.1.in-addr.arpa", "PTR", dns.rcode.NOERROR, edns=False, mid=20)
    r.answer.append(_rrset("4.3.2.1.in-addr.arpa.", 60, "PTR", "host.example.com."))
    out.append(r.to_wire(want_shuffle=False))

    # An OPT between two additional records (dnspython renders it where it is put).
    r = _response("mid.example", "A", dns.rcode.NOERROR, edns=False, mid=21)
    r.answer.append(_rrset("mid.example.", 5, "A", "203.0.113.9"))
    r.additional.append(_rrset("mid.example.", 5, "A", "203.0.113.10"))
    opt = dns.rrset.RRset(dns.name.root, 1232, dns.rdatatype.OPT)
    opt.add(dns.rdtypes.ANY.OPT.OPT(1232, dns.rdatatype.OPT, []), 0x8000)
    r.additional.append(opt)
    r.additional.append(_rrset("mid.example.", 5, "AAAA", "2001:db8::9"))
    out.append(r.to_wire(want_shuffle=False))

    # Mixed-case names that compress onto each other.
    r = _response("Case.Example.COM", "A", dns.rcode.NOERROR, edns=True, mid=22)
    r.answer.append(_rrset("case.example.com.", 10, "CNAME", "CASE.example.com."))
    out.append(r.to_wire(want_shuffle=False))

    # A reply with TC set and nothing else, as a truncating upstream sends it.
    r = _response("big.example", "TXT", dns.rcode.NOERROR, edns=True, mid=23)
    r.flags |= dns.flags.TC
    out.append(r.to_wire(want_shuffle=False))

    # Round robin: many records of one name, each owner a pointer to the question.
    r = _response("rr.example", "A", dns.rcode.NOERROR, edns=True, mid=25)
    r.answer.append(_rrset("rr.example.", 20, "A", *(f"192.0.2.{i}" for i in range(1, 21))))
    out.append(r.to_wire(want_shuffle=False))

    r = _response("svc.example", "HTTPS", dns.rcode.NOERROR, edns=True, mid=26)
    r.answer.append(_rrset("svc.example.", 300, "HTTPS", '1 . alpn="h2,h3"'))
    out.append(r.to_wire(want_shuffle=False))

    # NXDOMAIN at the end of a CNAME chain.
    r = _response("alias.example.com", "A", dns.rcode.NXDOMAIN, edns=False, mid=27)
    r.answer.append(_rrset("alias.example.com.", 300, "CNAME", "gone.example.org."))
    r.authority.append(_soa("example.org.", ttl=120, minimum=300))
    out.append(r.to_wire(want_shuffle=False))

    r = _response("glue.example", "NS", dns.rcode.NOERROR, edns=True, mid=28)
    r.use_edns(0, dns.flags.DO, 1232)
    r.answer.append(_rrset("glue.example.", 3600, "NS", "a.ns.glue.example.", "b.ns.glue.example."))
    r.additional.append(_rrset("a.ns.glue.example.", 3600, "A", "198.51.100.1"))
    r.additional.append(_rrset("b.ns.glue.example.", 3600, "AAAA", "2001:db8::2"))
    out.append(r.to_wire(want_shuffle=False))

    # Names at the 255-octet limit, in the question and compressed in the answer.
    long_name = ".".join(["c" * 63] * 3 + ["d" * 61]) + "."
    r = _response(long_name, "A", dns.rcode.NOERROR, edns=False, mid=24)
    r.answer.append(_rrset(long_name, 60, "A", "192.0.2.255"))
    out.append(r.to_wire(want_shuffle=False))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    outdir = Path(args[0] if args else Path(__file__).parent / "corpus")
    outdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1035)
    messages = [("query", m) for m in _queries(rng)] + [("reply", m) for m in _replies(rng)]
    for i, (kind, buf) in enumerate(messages):
        (outdir / f"{kind}-{i:02d}.bin").write_bytes(buf)
    print(f"wrote {len(messages)} messages to {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
