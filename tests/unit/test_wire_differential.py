"""Differential tests: PicoDNS's wire views against dnspython, the oracle.

A hypothesis strategy builds real messages with dnspython (every rrset holds exactly one rdata, so
the list we built is the wire order of the records), renders them with compression, and the views
from ``picodns.wire`` and ``picodns.message`` must agree with what we built and with what dnspython
reads back. Expectations come from the built values or from dnspython, never from the code under
test. Runs derandomized and without the example database, so CI sees the same examples every time.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import string
import struct
from collections.abc import Callable
from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CAA
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.DS
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.OPT
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from picodns import message, wire
from picodns.errors import BADVERS, FORMERR, NOTIMP, REFUSED, SERVFAIL, WireError

IN = dns.rdataclass.IN
TOP_BIT = 0x80000000

SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

_LDH = string.ascii_letters + string.digits + "-_"
_ALNUM = string.ascii_letters + string.digits
_SEED = st.integers(0, 2**32 - 1)

# Hypothesis draws the structure of each message (shapes, counts, types, TTLs, rcodes, EDNS);
# the bulk octets (label text, addresses, digests) come from a generator seeded by one draw.
# Hundreds of draws per message made the examples too slow to run thousands of them.


def _label(rng: random.Random, length: int) -> bytes:
    """Mostly mixed-case letter-digit-hyphen labels; sometimes any octets (dots, NULs, 0xFF)."""
    if rng.random() < 0.2:
        return rng.randbytes(length)
    return "".join(rng.choices(_LDH, k=length)).encode()


def _build_name(shape: str, seed: int) -> dns.name.Name:
    rng = random.Random(seed)
    if shape == "root":
        return dns.name.root
    if shape == "short":
        lengths = [rng.randint(1, 12) for _ in range(rng.randint(1, 4))]
    else:
        target = {"max": 255, "near": rng.randint(245, 255)}.get(shape) or rng.randint(60, 255)
        room = target - 1  # the root octet
        lengths = []
        while room >= 2:
            n = min(rng.choice([63, rng.randint(1, 63)]), room - 1)
            lengths.append(n)
            room -= n + 1
    return dns.name.Name([*(_label(rng, n) for n in lengths), b""])


_SHAPES = st.sampled_from(["short", "short", "long", "near", "max", "root"])
names = st.builds(_build_name, _SHAPES, _SEED)
"""An absolute name: short, long, within a few octets of the 255 limit, or the root."""


def _recase(name: dns.name.Name, mask: int) -> dns.name.Name:
    """`name` with the case of its ASCII letters flipped where `mask` has a 1 bit."""
    out = []
    i = 0
    for label in name.labels:
        chars = bytearray(label)
        for j, c in enumerate(chars):
            if chr(c).isascii() and chr(c).isalpha():
                if mask >> (i % 64) & 1:
                    chars[j] = c ^ 0x20
                i += 1
        out.append(bytes(chars))
    return dns.name.Name(out)


Pool = list[dns.name.Name]


def _related_name(rng: random.Random, pool: Pool) -> dns.name.Name:
    """A name from the message's pool (in any case), a child of one, or a fresh name.

    Sharing suffixes, spelled in different case, makes dnspython compress across case."""
    how = rng.randrange(4)
    if how == 3:
        return _build_name(rng.choice(["short", "long", "near"]), rng.getrandbits(32))
    base = _recase(rng.choice(pool), rng.getrandbits(64))
    if how == 0:
        return base
    label = _label(rng, rng.randint(1, 20))
    if len(base.to_wire()) + len(label) + 1 > 255:
        return base
    return dns.name.Name([label, *base.labels])


def _edge_u32(rng: random.Random) -> int:
    return rng.choice([0, 1, 2**31 - 1, 2**31, 2**32 - 1, rng.getrandbits(31), rng.getrandbits(32)])


def _txt(rng: random.Random) -> list[bytes]:
    """One to five strings, some short, some near the 255-octet limit of one string."""
    return [
        rng.randbytes(rng.choice([0, rng.randint(1, 40), rng.randint(200, 255), 255]))
        for _ in range(rng.randint(1, 5))
    ]


def _ds(rng: random.Random) -> dns.rdata.Rdata:
    digest_type = rng.choice([1, 2, 4, 7, 200])
    size = {1: 20, 2: 32, 4: 48}.get(digest_type, rng.randint(0, 64))
    return dns.rdtypes.ANY.DS.DS(
        IN, 43, rng.getrandbits(16), rng.getrandbits(8), digest_type, rng.randbytes(size)
    )


def _soa(rng: random.Random, pool: Pool) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.SOA.SOA(
        IN,
        6,
        _related_name(rng, pool),
        _related_name(rng, pool),
        rng.getrandbits(32),
        _edge_u32(rng),
        _edge_u32(rng),
        _edge_u32(rng),
        _edge_u32(rng),  # MINIMUM, top bit included: RFC 2308 reads it like a TTL
    )


_RDATA: dict[str, Callable[[random.Random, Pool], dns.rdata.Rdata]] = {
    "A": lambda rng, _: dns.rdtypes.IN.A.A(IN, 1, str(ipaddress.IPv4Address(rng.getrandbits(32)))),
    "AAAA": lambda rng, _: dns.rdtypes.IN.AAAA.AAAA(
        IN, 28, str(ipaddress.IPv6Address(rng.getrandbits(128)))
    ),
    "NS": lambda rng, pool: dns.rdtypes.ANY.NS.NS(IN, 2, _related_name(rng, pool)),
    "CNAME": lambda rng, pool: dns.rdtypes.ANY.CNAME.CNAME(IN, 5, _related_name(rng, pool)),
    "PTR": lambda rng, pool: dns.rdtypes.ANY.PTR.PTR(IN, 12, _related_name(rng, pool)),
    "MX": lambda rng, pool: dns.rdtypes.ANY.MX.MX(
        IN, 15, rng.getrandbits(16), _related_name(rng, pool)
    ),
    "TXT": lambda rng, _: dns.rdtypes.ANY.TXT.TXT(IN, 16, _txt(rng)),
    "SRV": lambda rng, pool: dns.rdtypes.IN.SRV.SRV(
        IN, 33, *(rng.getrandbits(16) for _ in range(3)), _related_name(rng, pool)
    ),
    "SOA": _soa,
    "CAA": lambda rng, _: dns.rdtypes.ANY.CAA.CAA(
        IN,
        257,
        rng.getrandbits(8),
        "".join(rng.choice(_ALNUM) for _ in range(rng.randint(1, 15))).encode(),
        rng.randbytes(rng.randint(0, 80)),
    ),
    "DS": lambda rng, _: _ds(rng),
    # Types dnspython does not know travel as RFC 3597 generic rdata.
    "TYPE65280": lambda rng, _: dns.rdata.GenericRdata(
        IN, 65280, rng.randbytes(rng.randint(0, 120))
    ),
    "TYPE4000": lambda rng, _: dns.rdata.GenericRdata(IN, 4000, rng.randbytes(rng.randint(0, 9))),
}

u16 = st.integers(0, 0xFFFF)
ttls = st.one_of(
    st.integers(0, 2**31 - 1),
    st.integers(2**31, 2**32 - 1),
    st.sampled_from([0, 1, 300, 2**31 - 1, 2**31, 2**32 - 1]),
)
"""TTLs, including ones with the top bit set (RFC 2181 8 reads those as 0)."""

RecordSpec = tuple[str, int, int]
"""(type mnemonic, TTL, seed for the owner name and the rdata)."""
_RECORD = st.tuples(st.sampled_from(sorted(_RDATA)), ttls, _SEED)
_SOA_RECORD = st.tuples(st.just("SOA"), ttls, _SEED)


@dataclass(frozen=True)
class RR:
    """One record as we built it (the expectation)."""

    name: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata

    @property
    def rtype(self) -> int:
        return int(self.rdata.rdtype)

    def rrset(self) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(self.name, self.rdata.rdclass, self.rdata.rdtype)
        rrset.add(self.rdata, self.ttl)
        return rrset


@dataclass(frozen=True)
class Opt:
    payload: int
    do: bool
    options: tuple[tuple[int, bytes], ...]
    position: int
    """How many additional records precede the OPT record."""


@dataclass(frozen=True)
class Reply:
    """A rendered reply and everything we put into it."""

    wire: bytes
    id: int
    flags: int
    rcode: int
    qname: dns.name.Name
    qtype: int
    answer: list[RR]
    authority: list[RR]
    additional: list[RR]
    opt: Opt | None

    @property
    def records(self) -> list[RR]:
        return self.answer + self.authority + self.additional


_FLAG_BITS = dns.flags.AA | dns.flags.TC | dns.flags.RD | dns.flags.RA | dns.flags.AD | dns.flags.CD
_RCODES = [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL, dns.rcode.REFUSED]
_EXT_RCODES = [dns.rcode.BADVERS, dns.rcode.BADCOOKIE]


_POOLS = st.lists(names, min_size=1, max_size=3)
_REPLY_QTYPES = st.sampled_from([1, 28, 5, 6, 15, 16, 33, 65, 255, 65280])
_ANSWER = st.lists(_RECORD, max_size=5)
_AUTHORITY = st.lists(st.one_of(_SOA_RECORD, _RECORD), max_size=3)
_ADDITIONAL = st.lists(_RECORD, max_size=3)
_OPTIONS = st.lists(st.tuples(st.integers(65001, 65534), st.binary(max_size=12)), max_size=3)
_POSITION = st.integers(0, 3)
_BOOL = st.booleans()
_PLAIN_RCODE = st.sampled_from(_RCODES)
_ANY_RCODE = st.sampled_from(_RCODES + _EXT_RCODES)


def _records(specs: list[RecordSpec], pool: Pool) -> list[RR]:
    out = []
    for kind, ttl, seed in specs:
        rng = random.Random(seed)
        out.append(RR(_related_name(rng, pool), ttl, _RDATA[kind](rng, pool)))
    return out


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    """A reply built and rendered (compressed) by dnspython."""
    pool = draw(_POOLS)
    qname = _related_name(random.Random(draw(_SEED)), pool)
    qtype = draw(_REPLY_QTYPES)
    answer = _records(draw(_ANSWER), pool)
    authority = _records(draw(_AUTHORITY), pool)
    additional = _records(draw(_ADDITIONAL), pool)
    opt = None
    if draw(_BOOL):
        options = draw(_OPTIONS)
        opt = Opt(
            payload=draw(u16),
            do=draw(_BOOL),
            options=tuple(options),
            position=draw(_POSITION) % (len(additional) + 1),
        )
    rcode = draw(_ANY_RCODE if opt else _PLAIN_RCODE)
    flags = dns.flags.QR | (draw(u16) & _FLAG_BITS) | (rcode & 0xF)
    mid = draw(u16)

    msg = dns.message.Message(id=mid)
    msg.flags = flags
    msg.question.append(dns.rrset.RRset(qname, IN, qtype))
    msg.answer.extend(r.rrset() for r in answer)
    msg.authority.extend(r.rrset() for r in authority)
    msg.additional.extend(r.rrset() for r in additional)
    if opt is not None:
        ednsflags = (rcode >> 4) << 24 | (0x8000 if opt.do else 0)
        generic = [dns.edns.GenericOption(code, data) for code, data in opt.options]
        if opt.position == len(additional) and draw(_BOOL):
            msg.use_edns(0, ednsflags, opt.payload, options=generic)
        else:  # an OPT between other additional records: dnspython renders it where it stands
            opt_rrset = dns.rrset.RRset(dns.name.root, opt.payload, dns.rdatatype.OPT)
            opt_rrset.add(dns.rdtypes.ANY.OPT.OPT(opt.payload, 41, generic), ednsflags)
            msg.additional.insert(opt.position, opt_rrset)
    return Reply(
        msg.to_wire(max_size=65535, want_shuffle=False),
        mid,
        flags,
        rcode,
        qname,
        qtype,
        answer,
        authority,
        additional,
        opt,
    )


def _no_top(ttl: int) -> int:
    """A TTL as RFC 2181 8 reads it: values with the top bit set are 0."""
    return 0 if ttl & TOP_BIT else ttl


def _u32(buf: bytes, pos: int) -> int:
    value: int = struct.unpack_from("!I", buf, pos)[0]
    return value


def _u16(buf: bytes, pos: int) -> int:
    value: int = struct.unpack_from("!H", buf, pos)[0]
    return value


def _oracle(buf: bytes) -> dns.message.Message:
    """dnspython's reading of `buf`, one record per rrset, so sections are in wire order."""
    return dns.message.from_wire(buf, one_rr_per_rrset=True)


def _rr_view(rrsets: list[dns.rrset.RRset]) -> list[tuple[bytes, int, int, int, bytes]]:
    """Comparable (name, type, class, ttl, rdata) tuples; names exactly as on the wire."""
    return [(r.name.to_wire(), r.rdtype, r.rdclass, r.ttl, r[0].to_digestable()) for r in rrsets]


# ---------------------------------------------------------------------------------------------
# analyze_reply
# ---------------------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=600)
@given(replies())
def test_analyze_reply_agrees_with_dnspython(reply: Reply) -> None:
    buf = reply.wire
    info = message.analyze_reply(buf)
    oracle = _oracle(buf)

    assert info.id == reply.id == oracle.id
    assert info.flags == reply.flags
    assert info.rcode == reply.rcode == oracle.rcode()
    qwire = reply.qname.to_wire()
    assert buf[12 : info.qend] == qwire
    assert buf[info.qend : info.qend + 4] == struct.pack("!HH", reply.qtype, IN)
    assert (
        info.question(buf) == reply.qname.canonicalize().to_wire() + buf[info.qend : info.qend + 4]
    )
    assert info.ancount == len(reply.answer)
    assert info.truncated == bool(reply.flags & dns.flags.TC)

    raw_ttls = [r.ttl for r in reply.records]
    assert [_u32(buf, off) for off in info.ttl_offsets] == raw_ttls
    assert info.ttls == [_no_top(t) for t in raw_ttls]
    # dnspython reads top-bit TTLs as 0 too: the two readings must agree.
    sections = oracle.answer + oracle.authority + oracle.additional
    assert info.ttls == [r.ttl for r in sections]

    answer_ttls = [_no_top(r.ttl) for r in reply.answer]
    assert info.min_ttl == (min(answer_ttls) if answer_ttls else None)

    soas = [i for i, r in enumerate(reply.authority) if r.rtype == 6]
    expected_neg = None
    if soas:
        soa = reply.authority[soas[0]]
        assert info.soa_index == len(reply.answer) + soas[0]
        # NXDOMAIN, NODATA, and a CNAME chain ending in either: the SOA bounds them (RFC 2308).
        if reply.rcode in (dns.rcode.NXDOMAIN, dns.rcode.NOERROR):
            expected_neg = min(_no_top(soa.ttl), _no_top(soa.rdata.minimum))  # type: ignore[attr-defined]
    else:
        assert info.soa_index == -1
    assert info.neg_ttl == expected_neg

    if reply.opt is None:
        assert (info.opt_start, info.opt_end, info.opt_index) == (-1, -1, -1)
        assert oracle.edns == -1
    else:
        start = info.opt_start
        assert buf[start] == 0
        assert _u16(buf, start + 1) == dns.rdatatype.OPT
        assert _u16(buf, start + 3) == reply.opt.payload
        rdlen = sum(4 + len(data) for _, data in reply.opt.options)
        assert _u16(buf, start + 9) == rdlen
        assert info.opt_end == start + 11 + rdlen
        assert info.opt_index == reply.opt.position
        assert oracle.edns == 0 and oracle.payload == reply.opt.payload


# ---------------------------------------------------------------------------------------------
# read_message
# ---------------------------------------------------------------------------------------------


_UNCOMPRESSED_TYPES = {1, 28, 16, 33, 257, 43, 65280, 65534, 4000}


def _check_records(got: tuple[wire.ResourceRecord, ...], built: list[RR], buf: bytes) -> None:
    assert len(got) == len(built)
    for rr, exp in zip(got, built, strict=True):
        assert rr.name.lower() == exp.name.to_wire().lower()
        assert (rr.rtype, rr.rclass, rr.ttl) == (exp.rtype, exp.rdata.rdclass, exp.ttl)
        assert _u32(buf, rr.ttl_offset) == exp.ttl
        rdata_at = rr.ttl_offset + 6
        assert _u16(buf, rr.ttl_offset + 4) == len(rr.rdata)
        assert buf[rdata_at : rdata_at + len(rr.rdata)] == rr.rdata
        if exp.rtype in _UNCOMPRESSED_TYPES:
            assert rr.rdata == exp.rdata.to_wire()
        # Compressed or not, dnspython must read back the built rdata from where ours lies.
        back = dns.rdata.from_wire(IN, exp.rtype, buf, rdata_at, len(rr.rdata))
        assert back == exp.rdata


@settings(SETTINGS, max_examples=400)
@given(replies())
def test_read_message_agrees_with_dnspython(reply: Reply) -> None:
    buf = reply.wire
    msg = wire.read_message(buf)
    oracle = _oracle(buf)

    assert msg.id == reply.id
    assert msg.flags == reply.flags
    assert msg.rcode == reply.rcode
    assert msg.questions == (wire.Question(reply.qname.to_wire(), reply.qtype, IN),)
    _check_records(msg.answer, reply.answer, buf)
    _check_records(msg.authority, reply.authority, buf)
    _check_records(msg.additional, reply.additional, buf)
    # Decompressed owner names match dnspython's exactly, case included.
    ours = [r.name for r in msg.answer + msg.authority + msg.additional]
    assert ours == [r.name.to_wire() for r in oracle.answer + oracle.authority + oracle.additional]

    if reply.opt is None:
        assert msg.edns is None
    else:
        assert msg.edns is not None
        assert msg.edns.payload == reply.opt.payload
        assert msg.edns.version == 0
        assert msg.edns.do == reply.opt.do
        assert msg.edns.ext_rcode == reply.rcode >> 4
        assert msg.edns.options == reply.opt.options


# ---------------------------------------------------------------------------------------------
# strip_opt, render_ttls, truncated_reply
# ---------------------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=300)
@given(replies())
def test_strip_opt_removes_only_edns(reply: Reply) -> None:
    buf = reply.wire
    before = _oracle(buf)
    out, info = message.strip_opt(buf, message.analyze_reply(buf))
    after = _oracle(out)

    assert after.edns == -1
    assert after.id == reply.id
    assert after.flags == reply.flags
    assert after.question[0].name.to_wire() == reply.qname.to_wire()
    assert _rr_view(after.answer) == _rr_view(before.answer)
    assert _rr_view(after.authority) == _rr_view(before.authority)
    kept = reply.additional if reply.opt is None else reply.additional[: reply.opt.position]
    assert _rr_view(after.additional) == _rr_view(before.additional[: len(kept)])
    if reply.opt is None:
        assert out == buf
    # The info handed back describes the bytes handed back.
    again = message.analyze_reply(out)
    if reply.rcode <= 0xF:
        assert info == again
    else:
        # An extended rcode lived in the stripped OPT; the info handed back still carries it.
        # That disagreement is pinned by test_strip_opt_info_forgets_the_extended_rcode in
        # test_wire_limits.py; everything else must agree here.
        assert dataclasses.replace(info, rcode=again.rcode, neg_ttl=again.neg_ttl) == again


@settings(SETTINGS, max_examples=250)
@given(replies(), st.one_of(st.integers(0, 5), st.integers(0, 2**32)))
def test_render_ttls_ages_every_ttl_and_stops_at_zero(reply: Reply, elapsed: int) -> None:
    buf = reply.wire
    info = message.analyze_reply(buf)
    out = message.render_ttls(buf, message.pack_ttls(info.ttl_offsets, info.ttls), elapsed)
    before, after = _oracle(buf), _oracle(bytes(out))

    rrsets = after.answer + after.authority + after.additional
    assert [r.ttl for r in rrsets] == [max(0, _no_top(r.ttl) - elapsed) for r in reply.records]
    # Only TTL fields changed; every record's data reads back the same.
    assert len(out) == len(buf)
    changed = [i for i in range(len(buf)) if out[i] != buf[i]]
    assert all(any(off <= i < off + 4 for off in info.ttl_offsets) for i in changed)
    for section in ("answer", "authority", "additional"):
        old, new = getattr(before, section), getattr(after, section)
        assert [r[0] for r in new] == [r[0] for r in old]
    assert after.edns == before.edns and after.ednsflags == before.ednsflags


@settings(SETTINGS, max_examples=150)
@given(replies(), st.none() | st.tuples(u16, st.booleans()))
def test_truncated_reply_keeps_only_the_question(
    reply: Reply, opt: tuple[int, bool] | None
) -> None:
    buf = reply.wire
    info = message.analyze_reply(buf)
    opt_bytes = b""
    if opt is not None:
        opt_bytes = b"\x00" + struct.pack("!HHIH", 41, opt[0], 0x8000 if opt[1] else 0, 0)
    out = message.truncated_reply(buf, info.qend, opt_bytes)
    parsed = dns.message.from_wire(out)

    assert parsed.id == reply.id
    assert parsed.flags == reply.flags | dns.flags.TC
    assert [q.name.to_wire() for q in parsed.question] == [reply.qname.to_wire()]
    assert (parsed.question[0].rdtype, parsed.question[0].rdclass) == (reply.qtype, IN)
    assert parsed.answer == parsed.authority == parsed.additional == []
    if opt is None:
        assert parsed.edns == -1
    else:
        assert parsed.edns == 0
        assert parsed.payload == opt[0]
        assert bool(parsed.ednsflags & dns.flags.DO) == opt[1]


# ---------------------------------------------------------------------------------------------
# scan_query and parse_query
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuerySpec:
    wire: bytes
    id: int
    flags: int
    qname: dns.name.Name
    qtype: int
    qclass: int
    edns: bool
    do: bool
    cd: bool
    payload: int


payloads = st.one_of(
    st.integers(0, 511), st.integers(512, 4096), st.integers(4097, 65535), st.sampled_from([512])
)
qtypes = st.one_of(st.sampled_from([1, 28, 65, 97, 255, 15, 16, 6, 33]), st.integers(1, 65535))


def _make_query(
    qname: dns.name.Name,
    qtype: int,
    qclass: int,
    edns: bool,
    do: bool,
    cd: bool,
    payload: int,
    mid: int,
    options: list[tuple[int, bytes]],
) -> QuerySpec:
    if do:
        edns = True
    generic = [dns.edns.GenericOption(c, d) for c, d in options] if edns else None
    q = dns.message.make_query(
        qname,
        qtype,
        qclass,
        use_edns=0 if edns else False,
        want_dnssec=do,
        payload=payload if edns else None,
        options=generic,
        id=mid,
    )
    if cd:
        q.flags |= dns.flags.CD
    return QuerySpec(q.to_wire(), mid, q.flags, qname, qtype, qclass, edns, do, cd, payload)


queries = st.builds(
    _make_query,
    names,
    qtypes,
    st.sampled_from([1, 1, 1, 3, 255]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    payloads,
    u16,
    st.lists(st.tuples(st.integers(65001, 65534), st.binary(max_size=8)), max_size=2),
)


def _expected_key(q: QuerySpec) -> bytes:
    bits = (2 if q.do else 0) | (1 if q.cd else 0)
    return q.qname.canonicalize().to_wire() + struct.pack("!HHB", q.qtype, q.qclass, bits)


def _expected_limit(q: QuerySpec) -> int:
    return min(max(q.payload, 512), 4096) if q.edns else 0


@settings(SETTINGS, max_examples=600)
@given(queries)
def test_scan_and_parse_query_agree_with_dnspython(q: QuerySpec) -> None:
    qend = 12 + len(q.qname.to_wire())
    expected = (_expected_key(q), qend, _expected_limit(q))

    # The hot path walks QNAME label by label: names with a zero octet inside a label too.
    scanned = message.scan_query(q.wire)
    assert scanned is not None
    assert scanned[:3] == expected
    # "plain": RD set and spelled in lower case, so a cached reply needs only the ID.
    assert scanned[3] == (bool(q.flags & 0x0100) and q.qname.to_wire() == expected[0][:-5])

    parsed = message.parse_query(q.wire)
    assert (parsed.key, parsed.qend, parsed.limit) == expected
    assert parsed.id == q.id
    assert parsed.flags == q.flags
    assert parsed.qname == q.qname.to_wire()
    assert (parsed.qtype, parsed.qclass) == (q.qtype, q.qclass)
    assert parsed.do == q.do
    assert parsed.cd == q.cd
    if q.edns:
        assert parsed.edns is not None and parsed.edns.payload == q.payload
    else:
        assert parsed.edns is None


@st.composite
def lettered_names(draw: st.DrawFn) -> dns.name.Name:
    """A name with at least one ASCII letter, so that case can differ, and no zero octet in a
    label, so that the hot path keys it."""
    name = draw(names)
    name = dns.name.Name([label.replace(b"\x00", b"0") for label in name.labels[:-1]] + [b""])
    if any(chr(c).isascii() and chr(c).isalpha() for label in name.labels for c in label):
        return name
    if len(name.to_wire()) <= 253:
        return dns.name.Name([b"x", *name.labels])
    return dns.name.Name([b"x", b""])


@settings(SETTINGS, max_examples=200)
@given(lettered_names(), u16, u16, qtypes, st.booleans(), st.booleans())
def test_spellings_differing_only_in_case_share_a_key(
    name: dns.name.Name, mask: int, other_mask: int, qtype: int, do: bool, cd: bool
) -> None:
    first = _recase(name, mask | 1)  # flip at least the first letter
    second = _recase(name, other_mask & ~1)
    assert first.to_wire() != second.to_wire()
    a = _make_query(first, qtype, IN, do, do, cd, 1232, 1, [])
    b = _make_query(second, qtype, IN, do, do, cd, 1232, 2, [])
    scanned_a, scanned_b = message.scan_query(a.wire), message.scan_query(b.wire)
    assert scanned_a is not None and scanned_b is not None
    assert scanned_a[0] == scanned_b[0] == _expected_key(a)
    assert message.parse_query(a.wire).key == message.parse_query(b.wire).key
    # The question each client spelled is kept as spelled.
    assert message.parse_query(a.wire).qname == first.to_wire()


@settings(SETTINGS, max_examples=100)
@given(lettered_names(), st.booleans())
def test_type_https_and_type_97_have_different_keys(name: dns.name.Name, edns: bool) -> None:
    # 65 is b"A" and 97 is b"a": folding the whole key would merge them.
    https = _make_query(name, 65, IN, edns, False, False, 1232, 1, [])
    other = _make_query(name, 97, IN, edns, False, False, 1232, 1, [])
    key_https, key_other = message.scan_query(https.wire), message.scan_query(other.wire)
    assert key_https is not None and key_other is not None
    assert key_https[0] == _expected_key(https)
    assert key_other[0] == _expected_key(other)
    assert key_https[0] != key_other[0]
    assert message.parse_query(https.wire).key != message.parse_query(other.wire).key


# ---------------------------------------------------------------------------------------------
# Synthesized messages: error_reply, build_query
# ---------------------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=300)
@given(
    queries,
    st.sampled_from([FORMERR, SERVFAIL, REFUSED, NOTIMP, BADVERS]),
    st.booleans(),
    u16,
)
def test_error_reply_parses_and_echoes_the_query(
    q: QuerySpec, rcode: int, edns: bool, header_bits: int
) -> None:
    # Any opcode and flag bits the client may set, QR and RCODE clear.
    bits = header_bits & 0x7FF0
    if bits >> 11 == 5:  # dnspython reads opcode UPDATE as a different message; use NOTIFY
        bits ^= 0x0800
    query = q.wire[:2] + struct.pack("!H", bits) + q.wire[4:]
    out = message.error_reply(query, rcode, edns=edns)
    assert out is not None
    parsed = dns.message.from_wire(out)

    assert parsed.id == q.id
    assert parsed.rcode() == rcode
    echoed = bits & (0x7800 | dns.flags.RD | dns.flags.CD)
    assert parsed.flags == dns.flags.QR | dns.flags.RA | echoed | (rcode & 0xF)
    assert [x.name.to_wire() for x in parsed.question] == [q.qname.to_wire()]
    assert (parsed.question[0].rdtype, parsed.question[0].rdclass) == (q.qtype, q.qclass)
    assert parsed.answer == parsed.authority == parsed.additional == []
    assert parsed.edns == (0 if edns or rcode == BADVERS else -1)


@settings(SETTINGS, max_examples=200)
@given(u16, names, qtypes, st.sampled_from([1, 3, 255]), st.booleans(), st.booleans())
def test_build_query_is_an_edns_query_with_rd(
    qid: int, qname: dns.name.Name, qtype: int, qclass: int, cd: bool, do: bool
) -> None:
    question = qname.to_wire() + struct.pack("!HH", qtype, qclass)
    parsed = dns.message.from_wire(message.build_query(qid, question, cd=cd, do=do))

    assert parsed.id == qid
    assert parsed.flags & dns.flags.QR == 0
    assert parsed.opcode() == 0
    assert parsed.flags & dns.flags.RD
    assert bool(parsed.flags & dns.flags.CD) == cd
    assert [x.name.to_wire() for x in parsed.question] == [qname.to_wire()]
    assert (parsed.question[0].rdtype, parsed.question[0].rdclass) == (qtype, qclass)
    assert parsed.edns == 0
    assert parsed.payload == 1232
    assert bool(parsed.ednsflags & dns.flags.DO) == do
    assert parsed.answer == parsed.authority == parsed.additional == []


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=300)
@given(names)
def test_name_to_text_matches_dnspython_presentation(name: dns.name.Name) -> None:
    assert wire.name_to_text(name.to_wire()) == name.to_text()


@settings(SETTINGS, max_examples=200)
@given(
    st.lists(st.text(alphabet=_LDH, min_size=1, max_size=63), min_size=1, max_size=5),
)
def test_text_to_name_matches_dnspython_wire(labels: list[str]) -> None:
    text = ".".join(labels)
    try:
        expected = dns.name.from_text(text).to_wire()
    except dns.name.NameTooLong:
        with pytest.raises(WireError):
            wire.text_to_name(text)
        return
    assert wire.text_to_name(text) == expected
    assert wire.text_to_name(text + ".") == expected
