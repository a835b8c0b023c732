"""Hand-built malformed messages at every limit of the wire reader (RFC 1035 4.1, RFC 6891 6.1).

Each test builds its bytes field by field, so the expectation is in the bytes: a malformed
message must raise WireError with the rcode the fault implies (FORMERR, NOTIMP, BADVERS, or None
when no reply may be sent), and a message just inside a limit must pass.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import dns.message
import dns.rcode
import pytest

from picodns import message, wire
from picodns.errors import BADVERS, FORMERR, NOERROR, NOTIMP, NXDOMAIN, WireError

QR = 0x8000
RD = 0x0100
TYPE_A = 1
TYPE_SOA = 6
TYPE_TXT = 16
TYPE_OPT = 41


# ---------------------------------------------------------------------------------------------
# Builders: every field spelled out
# ---------------------------------------------------------------------------------------------


def header(
    *, mid: int = 0x1234, flags: int = 0, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!6H", mid, flags, qd, an, ns, ar)


def name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def pointer(offset: int) -> bytes:
    return bytes([0xC0 | offset >> 8, offset & 0xFF])


QNAME = name(b"www", b"example", b"com")
QUESTION = QNAME + struct.pack("!HH", TYPE_A, 1)
QEND = 12 + len(QNAME)
AFTER_QUESTION = 12 + len(QUESTION)


def rr(
    owner: bytes,
    rtype: int,
    rdata: bytes,
    *,
    ttl: int = 300,
    rclass: int = 1,
    rdlength: int | None = None,
) -> bytes:
    length = len(rdata) if rdlength is None else rdlength
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, length) + rdata


def opt(
    *,
    payload: int = 1232,
    ext_rcode: int = 0,
    version: int = 0,
    do: bool = False,
    rdata: bytes = b"",
    owner: bytes = b"\x00",
) -> bytes:
    ttl = ext_rcode << 24 | version << 16 | (0x8000 if do else 0)
    return rr(owner, TYPE_OPT, rdata, ttl=ttl, rclass=payload)


def soa_rdata(minimum: int, *, serial: int = 1) -> bytes:
    return (
        name(b"ns", b"example")
        + name(b"admin", b"example")
        + struct.pack("!5I", serial, 3600, 600, 86400, minimum)
    )


def query(*, flags: int = RD, extra: bytes = b"", ar: int = 0, qd: int = 1) -> bytes:
    return header(flags=flags, qd=qd, ar=ar) + QUESTION + extra


def reply(*records: bytes, an: int = 0, ns: int = 0, ar: int = 0, rcode: int = 0) -> bytes:
    return header(flags=QR | RD | rcode, an=an, ns=ns, ar=ar) + QUESTION + b"".join(records)


A_RECORD = rr(pointer(12), TYPE_A, bytes([192, 0, 2, 1]))


def raises_wire(func: Callable[[bytes], object], buf: bytes, rcode: int | None = FORMERR) -> None:
    with pytest.raises(WireError) as caught:
        func(buf)
    assert caught.value.rcode == rcode


def test_builders_make_messages_dnspython_accepts() -> None:
    # The positive control for everything below: the well-formed versions parse everywhere.
    plain = query(extra=opt(do=True), ar=1)
    assert dns.message.from_wire(plain).question[0].name.to_text() == "www.example.com."
    assert message.parse_query(plain).qend == QEND
    good = reply(A_RECORD, an=1)
    assert dns.message.from_wire(good).answer[0][0].address == "192.0.2.1"
    assert message.analyze_reply(good).ttl_offsets == [AFTER_QUESTION + 2 + 4]
    assert wire.read_message(good).answer[0].name == QNAME


# ---------------------------------------------------------------------------------------------
# Compression pointers (RFC 1035 4.1.4): strictly backwards, so no loops
# ---------------------------------------------------------------------------------------------


def test_pointer_to_itself_is_rejected() -> None:
    buf = reply(rr(pointer(AFTER_QUESTION), TYPE_A, b"\x01\x02\x03\x04"), an=1)
    with pytest.raises(WireError):
        wire.skip_name(buf, AFTER_QUESTION, len(buf))
    with pytest.raises(WireError):
        wire.read_name(buf, AFTER_QUESTION, len(buf))
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)


def _two_pointers_at_each_other(entry: int) -> tuple[bytes, int]:
    """A TXT record whose RDATA holds two pointers at each other; a second record's owner
    enters the pair at `entry` (0: the first pointer, 2: the second)."""
    a = AFTER_QUESTION + 2 + 10  # RDATA of the first record
    loop = pointer(a + 2) + pointer(a)
    first = rr(pointer(12), TYPE_TXT, loop)
    second = rr(pointer(a + entry), TYPE_A, b"\x01\x02\x03\x04")
    return reply(first, second, an=2), a


@pytest.mark.parametrize("entry", [0, 2])
def test_two_pointers_pointing_at_each_other_are_rejected(entry: int) -> None:
    buf, a = _two_pointers_at_each_other(entry)
    with pytest.raises(WireError):
        wire.skip_name(buf, a + entry, len(buf))
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)


def test_forward_pointer_is_rejected() -> None:
    # The first record's owner points at the second record's owner, a valid name further on.
    later = AFTER_QUESTION + 2 + 10 + 4
    first = rr(pointer(later), TYPE_A, b"\x01\x02\x03\x04")
    second = rr(name(b"a", b"example"), TYPE_A, b"\x05\x06\x07\x08")
    buf = reply(first, second, an=2)
    assert wire.read_name(buf, later, len(buf))[0] == name(b"a", b"example")
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)


def test_pointer_into_its_own_name_is_rejected() -> None:
    # Owner at X: label "ab", then a pointer to X + 1 (inside this very name).
    x = AFTER_QUESTION
    buf = reply(rr(b"\x02ab" + pointer(x + 1), TYPE_A, b"\x01\x02\x03\x04"), an=1)
    with pytest.raises(WireError):
        wire.skip_name(buf, x, len(buf))
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)


def test_pointer_into_the_middle_of_an_earlier_name_is_followed() -> None:
    # Pointing at the "example" label of www.example.com is legal compression.
    buf = reply(rr(b"\x03ftp" + pointer(12 + 4), TYPE_A, b"\x01\x02\x03\x04"), an=1)
    assert wire.read_message(buf).answer[0].name == name(b"ftp", b"example", b"com")
    assert message.analyze_reply(buf).ancount == 1


def test_pointer_chain_stepping_backwards_is_followed() -> None:
    # a.www.example.com -> www.example.com via two pointers, each lower than the last.
    first = rr(b"\x01a" + pointer(12), TYPE_A, b"\x01\x02\x03\x04")
    second_owner = AFTER_QUESTION
    second = rr(pointer(second_owner), TYPE_A, b"\x05\x06\x07\x08")
    buf = reply(first, second, an=2)
    names = [r.name for r in wire.read_message(buf).answer]
    assert names == [b"\x01a" + QNAME] * 2


def test_pointer_with_a_missing_second_octet_is_rejected() -> None:
    buf = reply(an=1) + b"\xc0"
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)


# ---------------------------------------------------------------------------------------------
# Labels and names (RFC 1035 2.3.4): labels <= 63, names <= 255 octets
# ---------------------------------------------------------------------------------------------


def test_label_of_63_is_accepted() -> None:
    qname = name(b"a" * 63, b"com")
    buf = header(flags=RD) + qname + b"\x00\x01\x00\x01"
    assert wire.scan_qname(buf, 12) == 12 + len(qname)
    assert message.parse_query(buf).qname == qname


def test_label_of_64_is_rejected_as_an_extended_label_type() -> None:
    # A length octet of 64 is 0b01000000: the retired extended label type 0x40 (RFC 6891 5).
    qname = b"\x40" + b"a" * 64 + name(b"com")
    buf = header(flags=RD) + qname + b"\x00\x01\x00\x01"
    with pytest.raises(WireError):
        wire.scan_qname(buf, 12)
    raises_wire(message.parse_query, buf)
    raises_wire(wire.read_message, buf)


def _name_of(length: int) -> bytes:
    """An uncompressed name of exactly `length` octets (63-octet labels, then the rest)."""
    labels = []
    room = length - 1
    while room:
        n = min(63, room - 1)
        labels.append(b"x" * n)
        room -= n + 1
    out = name(*labels)
    assert len(out) == length
    return out


def test_question_name_of_255_octets_is_accepted() -> None:
    qname = _name_of(255)
    buf = header(flags=RD) + qname + b"\x00\x01\x00\x01"
    assert wire.scan_qname(buf, 12) == 12 + 255
    assert message.parse_query(buf).qname == qname
    assert dns.message.from_wire(buf).question[0].name.to_wire() == qname


def test_question_name_of_256_octets_is_rejected() -> None:
    qname = name(b"x" * 63, b"x" * 63, b"x" * 63, b"x" * 62)
    assert len(qname) == 256
    buf = header(flags=RD) + qname + b"\x00\x01\x00\x01"
    with pytest.raises(WireError):
        wire.scan_qname(buf, 12)
    raises_wire(message.parse_query, buf)
    raises_wire(message.analyze_reply, header(flags=QR) + qname + b"\x00\x01\x00\x01")


def _compressed_owner_reply(prefix: bytes) -> tuple[bytes, int]:
    """Question of 253 octets; one record whose owner is `prefix` + a pointer to it."""
    qname = _name_of(253)
    owner = prefix + pointer(12)
    question = qname + b"\x00\x01\x00\x01"
    buf = header(flags=QR, an=1) + question + rr(owner, TYPE_A, b"\x01\x02\x03\x04")
    return buf, 12 + len(question)


def test_compressed_name_of_255_octets_is_accepted() -> None:
    buf, at = _compressed_owner_reply(b"\x01y")  # 2 + 253 octets
    assert wire.skip_name(buf, at, len(buf)) == at + 4
    owner, after = wire.read_name(buf, at, len(buf))
    assert (len(owner), after) == (255, at + 4)
    assert message.analyze_reply(buf).ancount == 1


def test_compressed_name_of_256_octets_is_rejected() -> None:
    buf, at = _compressed_owner_reply(b"\x02yy")  # 3 + 253 octets
    with pytest.raises(WireError):
        wire.skip_name(buf, at, len(buf))
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)


@pytest.mark.parametrize("label_type", [0x40, 0x80])
def test_extended_label_types_are_rejected_in_the_question(label_type: int) -> None:
    buf = header(flags=RD) + bytes([label_type, 1]) + b"a\x00" + b"\x00\x01\x00\x01"
    with pytest.raises(WireError):
        wire.scan_qname(buf, 12)
    raises_wire(message.parse_query, buf)
    raises_wire(wire.read_message, buf)


@pytest.mark.parametrize("label_type", [0x40, 0x80])
def test_extended_label_types_are_rejected_in_a_record_name(label_type: int) -> None:
    owner = bytes([label_type, 1]) + b"a\x00"
    buf = reply(rr(owner, TYPE_A, b"\x01\x02\x03\x04"), an=1)
    with pytest.raises(WireError):
        wire.skip_name(buf, AFTER_QUESTION, len(buf))
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)


# ---------------------------------------------------------------------------------------------
# Truncation at every layer
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(12))
def test_message_shorter_than_a_header_gets_no_reply(size: int) -> None:
    buf = query()[:size]
    raises_wire(message.parse_query, buf, rcode=None)
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)
    assert message.scan_query(buf) is None
    assert message.error_reply(buf, FORMERR) is None


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5, 9, len(QUESTION) - 1])
def test_truncated_question_is_formerr(cut: int) -> None:
    buf = query()[:-cut]
    raises_wire(message.parse_query, buf)
    raises_wire(wire.read_message, buf)
    assert message.scan_query(buf) is None
    raises_wire(message.analyze_reply, reply()[:-cut])


@pytest.mark.parametrize("keep", [0, 1, 2, 5, 9])
def test_truncated_record_header_is_rejected(keep: int) -> None:
    buf = reply(an=1) + pointer(12) + struct.pack("!HHIH", TYPE_A, 1, 300, 4)[:keep]
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)


def test_rdlength_past_the_end_is_rejected() -> None:
    buf = reply(rr(pointer(12), TYPE_A, b"\x01\x02\x03\x04", rdlength=0xFFFF), an=1)
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)
    opt_past_end = opt()[:-2] + b"\x00\x09"  # OPT RDLENGTH 9, nothing follows
    raises_wire(message.parse_query, query(extra=opt_past_end, ar=1))
    assert message.scan_query(query(extra=opt_past_end, ar=1)) is None


@pytest.mark.parametrize("keep", [0, 1, 3])
def test_truncated_rdata_is_rejected(keep: int) -> None:
    buf = reply(A_RECORD, an=1)
    buf = buf[: len(buf) - 4 + keep]
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)


def test_record_count_beyond_the_records_is_rejected() -> None:
    buf = reply(A_RECORD, an=2)
    raises_wire(wire.read_message, buf)
    raises_wire(message.analyze_reply, buf)


def test_trailing_junk_after_the_last_record_is_formerr() -> None:
    junk_query = query() + b"\x00"
    raises_wire(message.parse_query, junk_query)
    raises_wire(wire.read_message, junk_query)
    assert message.scan_query(junk_query) is None
    junk_edns = query(extra=opt() + b"\xff", ar=1)
    raises_wire(message.parse_query, junk_edns)
    assert message.scan_query(junk_edns) is None
    raises_wire(message.analyze_reply, reply(A_RECORD, an=1) + b"\x00\x00")


# ---------------------------------------------------------------------------------------------
# The OPT record (RFC 6891 6.1.1): at most one, additional section only, owned by the root
# ---------------------------------------------------------------------------------------------


def test_two_opt_records_are_formerr() -> None:
    buf = query(extra=opt() + opt(), ar=2)
    raises_wire(message.parse_query, buf)
    raises_wire(wire.read_message, buf)
    assert message.scan_query(buf) is None
    raises_wire(message.analyze_reply, reply(opt(), opt(), ar=2))


def test_opt_in_the_answer_section_is_formerr() -> None:
    raises_wire(message.analyze_reply, reply(opt(), an=1))
    raises_wire(wire.read_message, reply(opt(), an=1))
    raises_wire(message.analyze_reply, reply(opt(), ns=1))
    in_answer = header(flags=RD, an=1) + QUESTION + opt()
    raises_wire(message.parse_query, in_answer)
    assert message.scan_query(in_answer) is None


def test_opt_not_owned_by_the_root_is_formerr() -> None:
    buf = query(extra=opt(owner=name(b"a")), ar=1)
    raises_wire(message.parse_query, buf)
    raises_wire(wire.read_message, buf)
    assert message.scan_query(buf) is None
    raises_wire(message.analyze_reply, reply(opt(owner=name(b"a")), ar=1))


@pytest.mark.parametrize(
    "rdata",
    [
        b"\x00\x0a\x00\x09" + b"12345678",  # option length 9, 8 octets follow
        b"\x00\x0a\x00",  # option header cut short
        b"\x00\x0a\x00\x02ab" + b"\xff",  # a good option, then one stray octet
    ],
)
def test_bad_edns_option_length_is_formerr(rdata: bytes) -> None:
    buf = query(extra=opt(rdata=rdata), ar=1)
    raises_wire(message.parse_query, buf)
    raises_wire(wire.read_message, buf)
    assert message.scan_query(buf) is None


def test_good_edns_options_are_read() -> None:
    buf = query(extra=opt(rdata=b"\x00\x0a\x00\x02ab\xfd\xe9\x00\x00", do=True), ar=1)
    parsed = message.parse_query(buf)
    assert parsed.edns is not None and parsed.edns.options == ((10, b"ab"), (65001, b""))
    assert parsed.do
    scanned = message.scan_query(buf)
    assert scanned is not None and scanned[0] == parsed.key


# ---------------------------------------------------------------------------------------------
# Header checks on queries (RFC 1035 4.1.1, RFC 6891 6.1.3)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("qd", [0, 2])
def test_qdcount_other_than_one_is_formerr(qd: int) -> None:
    buf = header(flags=RD, qd=qd) + QUESTION * qd
    raises_wire(message.parse_query, buf)
    assert message.scan_query(buf) is None
    raises_wire(message.analyze_reply, header(flags=QR, qd=qd) + QUESTION * qd)


def test_response_sent_as_a_query_gets_no_reply() -> None:
    buf = query(flags=QR | RD)
    raises_wire(message.parse_query, buf, rcode=None)
    assert message.scan_query(buf) is None


def test_reply_without_qr_is_rejected_by_analyze_reply() -> None:
    raises_wire(message.analyze_reply, query())


def test_opcode_status_is_notimp() -> None:
    buf = query(flags=2 << 11 | RD)
    raises_wire(message.parse_query, buf, rcode=NOTIMP)
    assert message.scan_query(buf) is None
    out = message.error_reply(buf, NOTIMP)
    # Header echoes ID, opcode and RD; QR and RA set; question echoed; no records.
    assert out == header(flags=QR | 2 << 11 | RD | 0x0080 | NOTIMP) + QUESTION


def test_edns_version_1_is_badvers() -> None:
    buf = query(extra=opt(version=1), ar=1)
    raises_wire(message.parse_query, buf, rcode=BADVERS)
    assert message.scan_query(buf) is None
    out = message.error_reply(buf, BADVERS)
    assert out is not None
    parsed = dns.message.from_wire(out)
    assert parsed.rcode() == dns.rcode.BADVERS
    assert out[3] & 0xF == 0  # the upper 8 bits live in the OPT TTL (RFC 6891 6.1.3)
    assert wire.read_message(out).rcode == BADVERS


def test_error_reply_without_a_readable_question_has_no_question() -> None:
    buf = header(flags=RD) + b"\x05ab"  # the name runs off the end
    assert message.error_reply(buf, FORMERR) == header(flags=QR | RD | 0x0080 | FORMERR, qd=0)


# ---------------------------------------------------------------------------------------------
# Negative caching's SOA (RFC 2308 5; RFC 1035 3.3.13)
# ---------------------------------------------------------------------------------------------


def test_nxdomain_negative_ttl_is_min_of_soa_ttl_and_minimum() -> None:
    buf = reply(
        rr(name(b"example", b"com"), TYPE_SOA, soa_rdata(60), ttl=900), ns=1, rcode=NXDOMAIN
    )
    info = message.analyze_reply(buf)
    assert info.neg_ttl == 60
    assert info.soa_index == 0
    buf = reply(rr(name(b"example", b"com"), TYPE_SOA, soa_rdata(3600), ttl=30), ns=1)
    assert message.analyze_reply(buf).neg_ttl == 30  # NODATA: NOERROR, empty answer


def test_soa_minimum_with_the_top_bit_reads_as_zero() -> None:
    buf = reply(
        rr(name(b"com"), TYPE_SOA, soa_rdata(0x80000000 | 50), ttl=900), ns=1, rcode=NXDOMAIN
    )
    assert message.analyze_reply(buf).neg_ttl == 0


@pytest.mark.parametrize("delta", [-1, 1, -20])
def test_soa_rdata_of_the_wrong_length_in_nxdomain_is_rejected(delta: int) -> None:
    good = soa_rdata(60)
    rdata = good[:delta] if delta < 0 else good + b"\x00" * delta
    buf = reply(rr(name(b"com"), TYPE_SOA, rdata), ns=1, rcode=NXDOMAIN)
    raises_wire(message.analyze_reply, buf)


def test_empty_soa_rdata_is_rejected() -> None:
    buf = reply(rr(name(b"com"), TYPE_SOA, b""), ns=1, rcode=NXDOMAIN)
    raises_wire(message.analyze_reply, buf)


# ---------------------------------------------------------------------------------------------
# strip_opt's info
# ---------------------------------------------------------------------------------------------


def test_strip_opt_info_forgets_the_extended_rcode() -> None:
    # Upstream says BADVERS: header RCODE 0, OPT TTL upper byte 1. Without the OPT the reply
    # says NOERROR, and the info handed back must describe the bytes handed back, as it does
    # when a record follows the OPT (that path re-analyzes).
    last = reply(A_RECORD, opt(ext_rcode=1), an=1, ar=1)
    assert message.analyze_reply(last).rcode == BADVERS
    out, info = message.strip_opt(last, message.analyze_reply(last))
    assert out == reply(A_RECORD, an=1)
    assert info.rcode == message.analyze_reply(out).rcode == NOERROR


def test_strip_opt_drops_records_after_the_opt_and_reanalyzes() -> None:
    extra = rr(pointer(12), TYPE_A, b"\x09\x09\x09\x09")
    buf = reply(A_RECORD, opt(ext_rcode=1), extra, an=1, ar=2)
    out, info = message.strip_opt(buf, message.analyze_reply(buf))
    assert out == reply(A_RECORD, an=1)
    assert info.rcode == NOERROR
    assert info.opt_start == -1


# ---------------------------------------------------------------------------------------------
# for_clients: the reply as kept and served
# ---------------------------------------------------------------------------------------------

AA, RA = 0x0400, 0x0080


@pytest.mark.parametrize(
    ("records", "ar"),
    [
        ((A_RECORD, opt()), 1),  # the usual shape: OPT last, cut off in one copy
        ((A_RECORD, opt(), rr(pointer(12), TYPE_A, b"\x09\x09\x09\x09")), 2),  # re-analyzed
        ((A_RECORD,), 0),  # no OPT at all
    ],
)
@pytest.mark.parametrize("upstream_flags", [QR | AA | RD, QR | RD | RA, QR])
def test_for_clients_clears_aa_sets_ra_and_rd_and_drops_the_opt(
    records: tuple[bytes, ...], ar: int, upstream_flags: int
) -> None:
    buf = header(flags=upstream_flags, an=1, ar=ar) + QUESTION + b"".join(records)
    out, info = message.for_clients(buf, message.analyze_reply(buf))
    parsed = dns.message.from_wire(out)  # the oracle reads what a client would get
    assert parsed.edns == -1 and not parsed.additional
    assert parsed.flags & 0xFFFF == QR | RD | RA
    assert [rrset.to_text() for rrset in parsed.answer] == ["www.example.com. 300 IN A 192.0.2.1"]
    again = message.analyze_reply(out)  # the info handed back describes the bytes handed back
    assert (info.opt_start, info.ttl_offsets, info.rcode) == (-1, again.ttl_offsets, NOERROR)


# ---------------------------------------------------------------------------------------------
# A pointer names a prior occurrence (RFC 1035 4.1.4)
# ---------------------------------------------------------------------------------------------


def test_a_name_reached_through_a_pointer_must_end_before_the_pointer() -> None:
    # Found by the fuzzer: an additional record's owner points back into an MX record's RDATA,
    # and the labels there run on past the pointer, through the next records, into the OPT
    # record. Accepted, the reply stopped parsing once its OPT was cut off (the stored form).
    found = bytes.fromhex(
        "000d81000001000200000002046d61696c076578616d706c6503636f6d00000f0001c00c000f0001"
        "0000012c0008000a03c0780c316dc00c000f00010000012c00130014036d7832076578616d706c65"
        "036e657400c030000100010000012c0004c63364070000292000000000000000"
    )
    raises_wire(message.analyze_reply, found, rcode=FORMERR)
    # The same shape with the name wholly before its pointer is fine.
    prior = name(b"ns", b"example", b"com")
    start = 12 + len(QUESTION)
    ok = reply(
        rr(prior, TYPE_A, b"\x01\x02\x03\x04"),
        rr(pointer(start), TYPE_A, b"\x05\x06\x07\x08"),
        an=2,
    )
    assert message.analyze_reply(ok).ancount == 2
