"""DNS Core, part 1: the bounds-checked wire-format reader and writer (RFC 1035 4.1).

Rules kept here:
- Every read is bounds-checked against an explicit end offset; an overrun raises
  :class:`~picodns.errors.WireError`, never IndexError or struct.error.
- Names: labels <= 63 octets, names <= 255 octets (RFC 1035 2.3.4). A compression pointer must
  point strictly before the lowest offset already visited for that name, so loops are impossible
  by construction; at most MAX_POINTER_HOPS pointers per name bound the work per name.
- RDATA is opaque bytes (RFC 3597) read inside its RDLENGTH region, which must be used exactly.
- At most one OPT record (RFC 6891 6.1.1).

No I/O, no clock, no logging: bytes in, values out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from picodns.errors import WireError

__all__ = [
    "BYTE",
    "CLASS_IN",
    "FLAG_AA",
    "FLAG_AD",
    "FLAG_CD",
    "FLAG_QR",
    "FLAG_RA",
    "FLAG_RD",
    "FLAG_TC",
    "HEADER",
    "HEADER_SIZE",
    "MAX_LABEL",
    "MAX_NAME",
    "MAX_POINTER_HOPS",
    "MAX_TCP_SIZE",
    "MAX_UDP_SIZE",
    "MIN_UDP_PAYLOAD",
    "RR_FIXED",
    "TYPE_OPT",
    "TYPE_SOA",
    "Edns",
    "Message",
    "Question",
    "ResourceRecord",
    "name_to_text",
    "qname_end",
    "read_message",
    "read_name",
    "read_opt",
    "scan_qname",
    "skip_name",
    "text_to_name",
    "u16",
    "write_opt",
]

HEADER_SIZE: Final = 12
MAX_LABEL: Final = 63
MAX_NAME: Final = 255
MAX_POINTER_HOPS: Final = 16  # per name; bounds the work a hostile message can cause (as dnspython)
MAX_UDP_SIZE: Final = 4096  # largest UDP message we accept or ask for (RFC 6891 6.2.5)
MAX_TCP_SIZE: Final = 65535  # 2-byte length framing (RFC 7766 8): larger is impossible
MIN_UDP_PAYLOAD: Final = 512  # RFC 1035 4.2.1; RFC 6891 6.2.5: smaller EDNS sizes count as 512

TYPE_SOA: Final = 6
TYPE_OPT: Final = 41
CLASS_IN: Final = 1

FLAG_QR: Final = 0x8000
FLAG_AA: Final = 0x0400
FLAG_TC: Final = 0x0200
FLAG_RD: Final = 0x0100
FLAG_RA: Final = 0x0080
FLAG_AD: Final = 0x0020
FLAG_CD: Final = 0x0010

HEADER: Final = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
RR_FIXED: Final = struct.Struct("!HHIH")  # type, class, ttl, rdlength
BYTE: Final = tuple(bytes((i,)) for i in range(256))
"""Every one-byte bytes object, made once: a byte built from an int without a call."""


def u16(n: int) -> bytes:
    """`n` (0..65535) as two bytes, network order: two table lookups and one concatenation,
    cheaper compiled than ``int.to_bytes`` (which parses its arguments on every call)."""
    return BYTE[n >> 8] + BYTE[n & 0xFF]


def _walk_name(buf: bytes, pos: int, end: int, out: list[bytes] | None) -> int:
    """Walk the name at `pos`; return the offset just after it (after the first pointer, if any).

    Labels are appended to `out` when it is given. `end` bounds the name's own bytes. A
    compression pointer names a prior occurrence (RFC 1035 4.1.4): the name it reaches must
    end before the pointer itself, so after a pointer the bound is the pointer's own offset.
    (Were it the whole message, a name could run on into later records, an OPT record among
    them, and stop parsing once that record is cut off.)
    """
    lowest = pos  # lowest offset visited: every pointer must point strictly below it
    total = 1  # the root label's length octet
    after = -1
    hops = 0
    while True:
        if pos >= end:
            raise WireError("name runs past the end of its data")
        n = buf[pos]
        if n == 0:
            return pos + 1 if after < 0 else after
        if n <= MAX_LABEL:
            total += n + 1
            if total > MAX_NAME:
                raise WireError("name longer than 255 octets")
            if pos + 1 + n > end:
                raise WireError("label runs past the end of its data")
            if out is not None:
                out.append(buf[pos : pos + 1 + n])
            pos += n + 1
        elif n >= 0xC0:
            if pos + 1 >= end:
                raise WireError("compression pointer runs past the end of its data")
            target = ((n & 0x3F) << 8) | buf[pos + 1]
            if target >= lowest:
                raise WireError("compression pointer does not point backwards")
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise WireError("too many compression pointers in one name")
            if after < 0:
                after = pos + 2
            end = pos  # the prior occurrence lies wholly before this pointer
            lowest = pos = target
        else:
            # 0x40 and 0x80 label types (RFC 6891 5 retired extended labels).
            raise WireError("unknown label type")


def skip_name(buf: bytes, pos: int, end: int) -> int:
    """Validate the (possibly compressed) name at `pos` and return the offset after it.

    Raises WireError for an overrun, an oversized label or name, or a pointer that does not
    point strictly backwards.
    """
    return _walk_name(buf, pos, end, None)


def read_name(buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """Read the name at `pos`; return its uncompressed wire form and the offset after it.

    Raises WireError like :func:`skip_name`.
    """
    labels: list[bytes] = []
    after = _walk_name(buf, pos, end, labels)
    labels.append(b"\x00")
    return b"".join(labels), after


_QNAME_ERRORS: Final = (
    "",
    "question name runs past the end of the message",  # -1
    "compressed or invalid label in question name",  # -2
    "name longer than 255 octets",  # -3
)


def qname_end(buf: bytes, pos: int) -> int:
    """:func:`scan_qname` without the exception, for the hot path: the offset just after the
    name at `pos`, or -1 (overrun), -2 (a pointer or a label over 63), -3 (over 255 octets)."""
    end = len(buf)
    start = pos
    while True:
        if pos >= end:
            return -1
        n = buf[pos]
        if n == 0:
            pos += 1
            return pos if pos - start <= MAX_NAME else -3
        if n > MAX_LABEL:
            return -2
        pos += n + 1


def scan_qname(buf: bytes, pos: int) -> int:
    """Return the offset just after the uncompressed name at `pos` (a question's QNAME).

    A question's name is the first name in a message, so it cannot be compressed: any pointer
    is rejected. Raises WireError for an overrun, a label over 63 or a name over 255 octets.
    """
    qend = qname_end(buf, pos)
    if qend < 0:
        raise WireError(_QNAME_ERRORS[-qend])
    return qend


def name_to_text(wire: bytes) -> str:
    """Return the presentation form of an uncompressed wire name (for logs and tests).

    Dots and backslashes inside labels and non-printable octets are escaped (RFC 4343 2.1).
    """
    if wire == b"\x00":
        return "."
    parts: list[str] = []
    pos = 0
    while wire[pos]:
        n = wire[pos]
        label = wire[pos + 1 : pos + 1 + n]
        text = []
        for c in label:
            if c in (0x2E, 0x5C, 0x22, 0x28, 0x29, 0x3B, 0x40, 0x24):
                text.append("\\" + chr(c))
            elif 0x21 <= c <= 0x7E:
                text.append(chr(c))
            else:
                text.append(f"\\{c:03d}")
        parts.append("".join(text))
        pos += n + 1
    return ".".join(parts) + "."


def text_to_name(text: str) -> bytes:
    """Return the wire form of a dotted name (no escapes); raises WireError if it is too long."""
    out = bytearray()
    for label in text.rstrip(".").split("."):
        if not label:
            if text in (".", ""):
                break
            raise WireError("empty label")
        raw = label.encode("ascii")
        if len(raw) > MAX_LABEL:
            raise WireError("label longer than 63 octets")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise WireError("name longer than 255 octets")
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Question:
    """One question entry."""

    name: bytes
    """QNAME in uncompressed wire form, as sent (case preserved)."""
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    """One resource record with opaque RDATA (RFC 3597)."""

    name: bytes
    """Owner name in uncompressed wire form."""
    rtype: int
    rclass: int
    ttl: int
    rdata: bytes
    ttl_offset: int
    """Offset of the TTL field in the message."""


@dataclass(frozen=True, slots=True)
class Edns:
    """The OPT pseudo-record's fields (RFC 6891 6.1.2)."""

    payload: int
    """Requestor's UDP payload size, as sent (not yet clamped)."""
    ext_rcode: int
    version: int
    do: bool
    options: tuple[tuple[int, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """A fully walked message: header fields, question and records (OPT kept apart)."""

    id: int
    flags: int
    questions: tuple[Question, ...]
    answer: tuple[ResourceRecord, ...]
    authority: tuple[ResourceRecord, ...]
    additional: tuple[ResourceRecord, ...]
    edns: Edns | None = field(default=None)

    @property
    def rcode(self) -> int:
        """The full response code: header RCODE plus the OPT's upper 8 bits."""
        ext = self.edns.ext_rcode if self.edns is not None else 0
        return (ext << 4) | (self.flags & 0xF)


def read_opt(buf: bytes, pos: int, end: int, ttl: int, rclass: int) -> Edns:
    """Parse OPT RDATA in buf[pos:end] given the record's CLASS and TTL fields.

    Returns the Edns view; raises WireError if an option runs past the RDATA (RFC 6891 6.1.2).
    """
    options: list[tuple[int, bytes]] = []
    while pos < end:
        if pos + 4 > end:
            raise WireError("truncated EDNS option header")
        code, length = struct.unpack_from("!HH", buf, pos)
        pos += 4
        if pos + length > end:
            raise WireError("EDNS option runs past its RDATA")
        options.append((code, buf[pos : pos + length]))
        pos += length
    return Edns(
        payload=rclass,
        ext_rcode=ttl >> 24,
        version=(ttl >> 16) & 0xFF,
        do=bool(ttl & 0x8000),
        options=tuple(options),
    )


def write_opt(payload: int, do: bool, ext_rcode: int = 0) -> bytes:
    """Return an OPT record (root owner, no options) for the additional section (RFC 6891)."""
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return b"\x00" + RR_FIXED.pack(TYPE_OPT, payload, ttl, 0)


def read_message(buf: bytes) -> Message:
    """Walk every section of `buf` and return a :class:`Message`.

    Raises WireError for any malformation: overruns, bad names, RDATA past its RDLENGTH,
    an OPT outside the additional section, not owned by the root, or more than one, and
    trailing bytes after the last record.
    """
    end = len(buf)
    if end < HEADER_SIZE:
        raise WireError("message shorter than a DNS header")
    mid, flags, qd, an, ns, ar = HEADER.unpack_from(buf, 0)
    pos = HEADER_SIZE
    questions = []
    for _ in range(qd):
        name, pos = read_name(buf, pos, end)
        if pos + 4 > end:
            raise WireError("question runs past the end of the message")
        qtype, qclass = struct.unpack_from("!HH", buf, pos)
        pos += 4
        questions.append(Question(name, qtype, qclass))
    sections: list[list[ResourceRecord]] = [[], [], []]
    edns: Edns | None = None
    for index, count in enumerate((an, ns, ar)):
        for _ in range(count):
            name, pos = read_name(buf, pos, end)
            if pos + 10 > end:
                raise WireError("record header runs past the end of the message")
            rtype, rclass, ttl, rdlen = RR_FIXED.unpack_from(buf, pos)
            ttl_offset = pos + 4
            pos += 10
            rdend = pos + rdlen
            if rdend > end:
                raise WireError("RDATA runs past the end of the message")
            if rtype == TYPE_OPT:
                if index != 2 or name != b"\x00":
                    raise WireError("OPT record outside the additional section or not at root")
                if edns is not None:
                    raise WireError("more than one OPT record")
                edns = read_opt(buf, pos, rdend, ttl, rclass)
            else:
                rr = ResourceRecord(name, rtype, rclass, ttl, buf[pos:rdend], ttl_offset)
                sections[index].append(rr)
            pos = rdend
    if pos != end:
        raise WireError("trailing bytes after the last record")
    return Message(
        mid,
        flags,
        tuple(questions),
        tuple(sections[0]),
        tuple(sections[1]),
        tuple(sections[2]),
        edns,
    )
