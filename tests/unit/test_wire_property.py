"""The parser's contract as a property: any bytes give a value or WireError, never another
exception, never a hang (STYLE rule 5). The deadline bounds each example's time.

Inputs are arbitrary bytes and valid dnspython-built messages mutated by bit flips, truncations,
insertions, deletions and overwritten 16-bit fields (counts, lengths, pointers). Where two views
both accept an input, they must agree with each other.
"""

from __future__ import annotations

import struct
from datetime import timedelta
from typing import TypeVar

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdtypes.ANY.OPT
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.contract import check
from picodns import message, wire
from picodns.errors import FORMERR, WireError

T = TypeVar("T")

SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=timedelta(milliseconds=500),
    suppress_health_check=[HealthCheck.too_slow],
)


def _seed_messages() -> list[bytes]:
    """Valid queries and replies, small enough that mutations reach every field."""
    seeds = []
    for name, rdtype, edns, do, cd in [
        ("www.example.com", "A", False, False, False),
        ("WwW.ExAmPlE.CoM", "AAAA", True, True, False),
        ("example.org", 65, True, False, True),
        ("a.b.c.d.e.f.example", "ANY", True, True, True),
    ]:
        q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, want_dnssec=do)
        if cd:
            q.flags |= dns.flags.CD
        seeds.append(q.to_wire(want_shuffle=False))
    q = dns.message.make_query("opt.example", "TXT", use_edns=0)
    q.use_edns(0, 0, 1232, options=[dns.edns.GenericOption(65001, b"cookie!!")])
    seeds.append(q.to_wire(want_shuffle=False))

    def response(qname: str, rdtype: str, rcode: int, edns: bool) -> dns.message.Message:
        q = dns.message.make_query(qname, rdtype, use_edns=0 if edns else False)
        r = dns.message.make_response(q)
        r.set_rcode(rcode)
        return r

    r = response("www.example.com", "A", dns.rcode.NOERROR, True)
    r.answer.append(dns.rrset.from_text("www.example.com.", 300, "IN", "CNAME", "web.example.com."))
    r.answer.append(
        dns.rrset.from_text("web.example.com.", 60, "IN", "A", "192.0.2.1", "192.0.2.2")
    )
    r.authority.append(
        dns.rrset.from_text(
            "example.com.", 3600, "IN", "NS", "ns1.example.com.", "ns2.example.com."
        )
    )
    r.additional.append(dns.rrset.from_text("ns1.example.com.", 3600, "IN", "A", "192.0.2.53"))
    seeds.append(r.to_wire(want_shuffle=False))

    r = response("nope.example.com", "A", dns.rcode.NXDOMAIN, True)
    r.authority.append(
        dns.rrset.from_text(
            "example.com.", 900, "IN", "SOA", "ns1.example.com. admin.example.com. 1 2 3 4 60"
        )
    )
    seeds.append(r.to_wire(want_shuffle=False))

    r = response("mail.example.com", "MX", dns.rcode.NOERROR, False)
    r.answer.append(
        dns.rrset.from_text("mail.example.com.", 2**31 + 7, "IN", "MX", "10 mx.mail.example.com.")
    )
    r.answer.append(
        dns.rrset.from_text("mail.example.com.", 30, "IN", "TXT", '"a" "' + "b" * 200 + '"')
    )
    seeds.append(r.to_wire(want_shuffle=False))

    # An OPT between additional records, and an upstream BADVERS.
    r = response("x.example", "A", dns.rcode.NOERROR, False)
    r.additional.append(dns.rrset.from_text("x.example.", 5, "IN", "A", "198.51.100.1"))
    opt = dns.rrset.RRset(dns.name.root, 1232, dns.rdatatype.OPT)
    opt.add(dns.rdtypes.ANY.OPT.OPT(1232, dns.rdatatype.OPT, []), 0x01008000)
    r.additional.append(opt)
    r.additional.append(dns.rrset.from_text("x.example.", 5, "IN", "AAAA", "2001:db8::1"))
    seeds.append(r.to_wire(want_shuffle=False))

    r = response("servfail.example", "A", dns.rcode.SERVFAIL, True)
    seeds.append(r.to_wire(want_shuffle=False))
    return seeds


SEEDS = _seed_messages()

_OPS = st.sampled_from(["flip", "truncate", "insert", "delete", "set16", "set8"])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid message with one to four mutations applied."""
    buf = bytearray(draw(st.sampled_from(SEEDS)))
    steps = draw(
        st.lists(
            st.tuples(_OPS, st.integers(0, 1 << 16), st.integers(0, 0xFFFF)), min_size=1, max_size=4
        )
    )
    for op, where, value in steps:
        at = where % (len(buf) + 1)
        if op == "flip" and buf:
            buf[at % len(buf)] ^= 1 << (value % 8)
        elif op == "truncate":
            del buf[at:]
        elif op == "insert":
            buf[at:at] = bytes([value & 0xFF])
        elif op == "delete":
            del buf[at : at + 1 + value % 4]
        elif op == "set16" and len(buf) >= 2:
            at = min(at, len(buf) - 2)
            buf[at : at + 2] = struct.pack("!H", value)
        elif op == "set8" and buf:
            buf[at % len(buf)] = value & 0xFF
    return bytes(buf)


inputs = st.one_of(st.binary(max_size=600), mutated())


@settings(SETTINGS, max_examples=1500)
@given(st.binary(max_size=600))
def test_any_bytes_give_a_value_or_wire_error(buf: bytes) -> None:
    check(buf)


@settings(SETTINGS, max_examples=2500)
@given(mutated())
def test_mutated_messages_give_a_value_or_wire_error(buf: bytes) -> None:
    check(buf)


def test_seed_messages_are_accepted() -> None:
    # The mutations start from valid messages: prove they are.
    for buf in SEEDS:
        dns.message.from_wire(buf)
        wire.read_message(buf)
        if buf[2] & 0x80:
            message.analyze_reply(buf)
        else:
            assert message.scan_query(buf) is not None
            message.parse_query(buf)


def _pointer_chain_message(flags: int) -> tuple[bytes, int]:
    """A 4096-octet message of maximal pointer chains, and its record count.

    The first record's RDATA is 1000 pointers, each pointing at the one before it (the first at
    the question's root name); every later record's owner points at the last of them, so each
    owner name is a walk of 1000 strictly-backwards hops.
    """
    question = b"\x00" + struct.pack("!HH", 1, 1)
    chain_at = 12 + len(question) + 1 + 10
    chain = b"\xc0\x0c" + b"".join(struct.pack("!H", 0xC000 | chain_at + 2 * i) for i in range(999))
    first = b"\x00" + struct.pack("!HHIH", 65280, 1, 60, len(chain)) + chain
    last_pointer = struct.pack("!H", 0xC000 | chain_at + 2 * 999)
    size = 12 + len(question) + len(first)
    records = []
    while size + 12 <= 4096:
        records.append(last_pointer + struct.pack("!HHIH", 1, 1, 60, 0))
        size += 12
    records[-1] = (
        last_pointer + struct.pack("!HHIH", 65280, 1, 60, 4096 - size) + b"\x00" * (4096 - size)
    )
    count = 1 + len(records)
    buf = struct.pack("!6H", 1, flags, 1, count, 0, 0) + question + first + b"".join(records)
    assert len(buf) == 4096
    return buf, count


def test_maximal_pointer_chains_in_4096_octets_are_rejected_quickly() -> None:
    buf, _count = _pointer_chain_message(0x8000)
    for parse in (wire.read_message, message.analyze_reply):
        with pytest.raises(WireError, match="too many compression pointers"):
            parse(buf)
    query, _ = _pointer_chain_message(0x0100)
    with pytest.raises(WireError):
        message.parse_query(query)
    message.scan_query(query)
    message.error_reply(query, FORMERR)


@pytest.mark.parametrize("hops", [wire.MAX_POINTER_HOPS, wire.MAX_POINTER_HOPS + 1])
def test_pointer_hops_per_name_are_limited(hops: int) -> None:
    # RDATA of the first record: pointers each pointing at the one before, the first at the
    # question's root name; the second record's owner points at the last of them.
    question = b"\x00" + struct.pack("!HH", 1, 1)
    chain_at = 12 + len(question) + 1 + 10
    chain = b"\xc0\x0c" + b"".join(
        struct.pack("!H", 0xC000 | chain_at + 2 * i) for i in range(hops - 2)
    )
    first = b"\x00" + struct.pack("!HHIH", 65280, 1, 60, len(chain)) + chain
    second = struct.pack("!H", 0xC000 | chain_at + 2 * (hops - 2)) + struct.pack(
        "!HHIH", 1, 1, 60, 0
    )
    buf = struct.pack("!6H", 1, 0x8000, 1, 2, 0, 0) + question + first + second
    if hops <= wire.MAX_POINTER_HOPS:
        assert wire.read_message(buf).answer[1].name == b"\x00"
    else:
        with pytest.raises(WireError, match="too many compression pointers"):
            wire.read_message(buf)
