"""DNS Core, part 2: what a forwarder needs from a message, without a full parse.

- :func:`scan_query` is the hot path: one scan of a plain query gives the normalised cache key,
  where the question ends, and the client's UDP size limit. Anything unusual returns None and
  goes the slow way, through :func:`parse_query`, which validates fully and raises
  :class:`~picodns.errors.WireError` carrying the rcode the client should get.
- :func:`analyze_reply` walks an upstream reply once: rcode, flags, the offset of every TTL,
  the minimum answer TTL, the negative TTL (RFC 2308), where the OPT record sits.
- Builders for the replies we synthesize (errors, truncation) and for upstream queries.

Cache key: lower-cased QNAME wire bytes (DNS case-folding is ASCII-only, RFC 4343, and a label
length octet is at most 63, so folding the whole name is safe), then QTYPE and QCLASS as sent
(not folded: type 65 is the byte 'A'), then one byte of DO/CD bits, which change the answer.

No I/O, no clock, no logging.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from picodns.errors import BADVERS, NOERROR, NOTIMP, NXDOMAIN, WireError
from picodns.wire import (
    BYTE,
    FLAG_AA,
    FLAG_CD,
    FLAG_QR,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    HEADER,
    HEADER_SIZE,
    MAX_UDP_SIZE,
    MIN_UDP_PAYLOAD,
    TYPE_OPT,
    TYPE_SOA,
    Edns,
    qname_end,
    read_message,
    scan_qname,
    skip_name,
    u16,
    write_opt,
)

__all__ = [
    "KEY_CD",
    "KEY_DO",
    "MAX_REMEMBERED",
    "MAX_SCANS",
    "MAX_TAILS",
    "UPSTREAM_PAYLOAD",
    "Query",
    "ReplyInfo",
    "Scan",
    "analyze_reply",
    "build_query",
    "error_reply",
    "for_clients",
    "key_slot",
    "pack_ttls",
    "parse_query",
    "remember_scan",
    "render_ttls",
    "scan_query",
    "strip_opt",
    "truncated_reply",
    "udp_limit",
]

UPSTREAM_PAYLOAD: Final = 1232  # EDNS payload we advertise upstream (DNS Flag Day 2020)
KEY_DO: Final = 2  # bits of the cache key's last byte
KEY_CD: Final = 1
_KEY_FLAGS: Final = (b"\x00", b"\x01", b"\x02", b"\x03")
_TTL: Final = struct.Struct("!I")
_TTL_AT: Final = struct.Struct("!HI")  # a TTL's offset in the message and its value
# root, type, payload, ext-rcode, version, flags, rdlen
_OPT_FIXED: Final = struct.Struct("!BHHBBHH")
_TTL_TOP: Final = 0x80000000


def udp_limit(payload: int) -> int:
    """Return the reply size a client with this EDNS payload accepts: 512..MAX_UDP_SIZE."""
    return MIN_UDP_PAYLOAD if payload < MIN_UDP_PAYLOAD else min(payload, MAX_UDP_SIZE)


def _opt_options_ok(buf: bytes, pos: int, end: int) -> bool:
    while pos < end:
        if pos + 4 > end:
            return False
        pos += 4 + ((buf[pos + 2] << 8) | buf[pos + 3])
    return pos == end


# What follows QNAME in a plain query (QTYPE, QCLASS and the OPT record, if any) repeats from
# query to query: a client sends the same EDNS size, flags and options every time. So it is
# parsed once and remembered: tail bytes -> (key suffix if CD=0, key suffix if CD=1, client
# limit, ARCOUNT it implies), or _NOT_PLAIN. Bounded: forgotten wholesale when full.
_TailInfo = tuple[bytes, bytes, int, int]
_NOT_PLAIN: _TailInfo = (b"", b"", 0, -1)
_TAILS: dict[bytes, _TailInfo] = {}
MAX_TAILS: Final = 4096


def _learn_tail(tail: bytes) -> _TailInfo:
    n = len(tail)
    if n < 4:
        info = _NOT_PLAIN
    elif n == 4:
        info = (tail + _KEY_FLAGS[0], tail + _KEY_FLAGS[KEY_CD], 0, 0)
    elif n < 15:
        info = _NOT_PLAIN
    else:
        root, rtype, payload, _ext, version, eflags, rdlen = _OPT_FIXED.unpack_from(tail, 4)
        if (
            root
            or rtype != TYPE_OPT
            or version
            or 15 + rdlen != n
            or not _opt_options_ok(tail, 15, n)
        ):
            info = _NOT_PLAIN
        else:
            do = KEY_DO if eflags & 0x8000 else 0
            qtc = tail[:4]
            info = (qtc + _KEY_FLAGS[do], qtc + _KEY_FLAGS[do | KEY_CD], udp_limit(payload), 1)
    if n <= MAX_REMEMBERED:
        if len(_TAILS) >= MAX_TAILS:
            _TAILS.clear()
        _TAILS[tail] = info
    return info


# Clients repeat themselves: a stub asks the same question with the same bytes but for the ID.
# So scans that led to a cache hit are remembered by the query's bytes after the ID, and a
# repeated query costs a slice and a dict lookup. A miss is not remembered: a stream of unique
# names (every one a miss) would only churn the memory. Bounded in two generations: when the
# live one is full it is retired whole, and the retired one is freed a few entries per
# insert, never all at once (clearing 16,384 entries in one go stalled a busy server 4-7 ms).
Scan = tuple[bytes, int, int, bool, bool, int]  # key, qend, limit, plain, remembered, slot
_UNSEEN: Scan = (b"", -1, -1, False, False, 0)  # "not remembered": no real scan has qend -1
_SCANS: Final[list[dict[bytes, Scan | None]]] = [{}, {}]  # [live, retired and being freed]
MAX_SCANS: Final = 16384
MAX_REMEMBERED: Final = 512  # longer queries are scanned every time: memory stays under ~10 MB
_FREE_PER_INSERT: Final = 4  # retired entries freed per insert: all gone long before the next


def key_slot(key: bytes) -> int:
    """0..255 from the cache key's hash (randomised per process): which LRU shard of the cache
    holds it (:class:`~picodns.cache.Cache` takes it modulo its shard count). Hashing an object
    and masking the result costs a boxed integer or two compiled, so a scan carries it."""
    return hash(key) & 0xFF


def scan_query(buf: bytes) -> Scan | None:
    """Scan a plain query and return ``(key, qend, limit, plain, remembered, slot)``, or None
    for the slow path.

    `qend` is the offset just after QNAME; `limit` is 0 for a client without EDNS, else its UDP
    payload limit clamped to 512..4096; `plain` says RD=1 and QNAME is spelled in lower case
    (as the cache stores it), so a cached reply needs only the ID patched in; `remembered` says
    the scan came from memory (see :func:`remember_scan`); `slot` is :func:`key_slot` of the
    key, computed once per distinct query instead of once per lookup. None means the packet is not a
    plain QUERY (QR set, another opcode, counts other than 1/0/0/0-1, an OPT that is not last
    or is malformed, EDNS version > 0, trailing bytes): :func:`parse_query` then decides.
    Never raises.

    QNAME is walked label by label with :func:`~picodns.wire.scan_qname`'s checks (no
    pointer, labels up to 63, the name up to 255 octets): a scanned query is valid as far as
    :func:`parse_query` would check it, so the miss path uses the scan as it is.
    """
    body = buf[2:]  # the result depends on every byte but the ID: remembered by them
    seen = _SCANS[0].get(body, _UNSEEN)
    if seen is None or seen[1] >= 0:
        return seen
    scanned = _scan(buf)
    if scanned is None and len(body) <= MAX_REMEMBERED:
        _remember(body, None)  # not plain: it can never be a hit, so the slow path is known
    return scanned


def remember_scan(buf: bytes, scanned: Scan, key: bytes) -> None:
    """Remember the scan of `buf`, which was answered from the cache under `key` (equal to
    the scan's own key: pass the cache's object, so later lookups match it by identity): the
    same query again (with any ID) gets it back from :func:`scan_query` without a scan."""
    if not scanned[4] and len(buf) - 2 <= MAX_REMEMBERED:
        _remember(buf[2:], (key, scanned[1], scanned[2], scanned[3], True, scanned[5]))


def _remember(body: bytes, scanned: Scan | None) -> None:
    memory = _SCANS
    live = memory[0]
    if len(live) >= MAX_SCANS:
        memory[1] = live  # the one before is empty by now: freed 4 per insert since
        live = memory[0] = {}
    live[body] = scanned
    retired = memory[1]
    for _ in range(_FREE_PER_INSERT):
        if not retired:
            break
        retired.popitem()  # the newest: O(1), no scan past the gaps freed entries leave


def _scan(buf: bytes) -> Scan | None:
    # Opcode QUERY, QR 0; QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT's high byte 0: by index.
    if len(buf) < 17 or buf[2] & 0xF8 or buf[5] != 1:
        return None
    if buf[4] or buf[6] or buf[7] or buf[8] or buf[9] or buf[10]:
        return None
    # QNAME label by label, with scan_qname's checks: what is remembered is a valid name, so
    # the miss path does not walk it again. Anything else (a pointer, an overrun, too long):
    # parse_query decides.
    qend = qname_end(buf, HEADER_SIZE)
    if qend < 0:
        return None
    tail = buf[qend:]
    info = _TAILS.get(tail)
    if info is None:
        info = _learn_tail(tail)
    if buf[11] != info[3]:
        return None
    suffix = info[1] if buf[3] & 0x10 else info[0]  # CD bit
    name = buf[HEADER_SIZE:qend]
    folded = name.lower()
    plain = bool(buf[2] & 1) and name == folded
    key = folded + suffix
    return key, qend, info[2], plain, False, key_slot(key)


@dataclass(frozen=True, slots=True)
class Query:
    """A fully validated client query."""

    id: int
    flags: int
    qname: bytes
    """QNAME wire bytes as the client spelled them."""
    qtype: int
    qclass: int
    qend: int
    """Offset just after QNAME in the client's packet."""
    key: bytes
    """Normalised cache key (see module docstring)."""
    edns: Edns | None
    limit: int
    """0 without EDNS, else the client's UDP payload limit (512..4096)."""

    @property
    def do(self) -> bool:
        """The client's DNSSEC OK bit."""
        return self.edns is not None and self.edns.do

    @property
    def cd(self) -> bool:
        """The client's Checking Disabled bit."""
        return bool(self.flags & FLAG_CD)


def parse_query(buf: bytes) -> Query:
    """Validate a client query fully and return it.

    Raises WireError whose ``rcode`` says what the client gets: None (drop: shorter than a
    header, or QR=1), NOTIMP (opcode other than QUERY, RFC 1035 4.1.1), BADVERS (EDNS version
    above 0, RFC 6891 6.1.3), FORMERR (anything else malformed: QDCOUNT != 1, bad names,
    records past the end, two OPTs, trailing bytes).
    """
    if len(buf) < HEADER_SIZE:
        raise WireError("message shorter than a DNS header", rcode=None)
    mid, flags, qd, _an, _ns, _ar = HEADER.unpack_from(buf, 0)
    if flags & FLAG_QR:
        raise WireError("response sent as a query", rcode=None)
    if (flags >> 11) & 0xF:
        raise WireError("opcode not implemented", rcode=NOTIMP)
    if qd != 1:
        raise WireError("QDCOUNT is not 1")
    qend = scan_qname(buf, HEADER_SIZE)
    msg = read_message(buf)
    q = msg.questions[0]
    edns = msg.edns
    if edns is not None and edns.version:
        raise WireError("EDNS version not supported", rcode=BADVERS)
    bits = (KEY_CD if flags & FLAG_CD else 0) | (KEY_DO if edns is not None and edns.do else 0)
    key = buf[HEADER_SIZE:qend].lower() + buf[qend : qend + 4] + _KEY_FLAGS[bits]
    limit = 0 if edns is None else udp_limit(edns.payload)
    return Query(mid, flags, q.name, q.qtype, q.qclass, qend, key, edns, limit)


@dataclass(slots=True)
class ReplyInfo:
    """What the forwarder needs from an upstream reply, from one walk."""

    id: int
    flags: int
    rcode: int
    """Full rcode, including the OPT's extended bits."""
    qend: int
    """Offset just after QNAME; the question is buf[12:qend+4]."""
    ancount: int
    ttl_offsets: list[int]
    """Offset of every TTL field outside the OPT record, in message order."""
    ttls: list[int]
    """The TTL at each offset; values with the top bit set read as 0 (RFC 2181 8)."""
    min_ttl: int | None
    """Smallest TTL in the answer section; None when it is empty."""
    neg_ttl: int | None
    """For NOERROR/NXDOMAIN with an SOA in authority (negative answers, CNAME chains ending in
    one): min(SOA TTL, SOA MINIMUM) of the first authority SOA (RFC 2308 5)."""
    soa_index: int
    """Index in ttl_offsets of that SOA's TTL, or -1."""
    opt_start: int
    """Offset of the OPT record, or -1; it runs to opt_end."""
    opt_end: int
    opt_index: int
    """How many additional records precede the OPT record."""
    zeroed: bool = False
    """Some TTL on the wire has its top bit set (so it differs from its value in `ttls`)."""
    asked: bool = False
    """The reply's question is byte for byte the `asked` one given to :func:`analyze_reply`."""

    # Written out, not generated: mypyc compiles this __init__ to C, while the one the
    # dataclass decorator would generate runs as interpreted code (4,400 instructions a reply).
    # The decorator keeps a class's own __init__; it still provides __eq__ and __repr__.
    def __init__(
        self,
        id: int,
        flags: int,
        rcode: int,
        qend: int,
        ancount: int,
        ttl_offsets: list[int],
        ttls: list[int],
        min_ttl: int | None,
        neg_ttl: int | None,
        soa_index: int,
        opt_start: int,
        opt_end: int,
        opt_index: int,
        zeroed: bool = False,
        asked: bool = False,
    ) -> None:
        self.id = id
        self.flags = flags
        self.rcode = rcode
        self.qend = qend
        self.ancount = ancount
        self.ttl_offsets = ttl_offsets
        self.ttls = ttls
        self.min_ttl = min_ttl
        self.neg_ttl = neg_ttl
        self.soa_index = soa_index
        self.opt_start = opt_start
        self.opt_end = opt_end
        self.opt_index = opt_index
        self.zeroed = zeroed
        self.asked = asked

    @property
    def truncated(self) -> bool:
        """TC bit."""
        return bool(self.flags & FLAG_TC)

    def question(self, buf: bytes) -> bytes:
        """The question as a folded key prefix (QNAME lower-cased, QTYPE, QCLASS)."""
        return buf[HEADER_SIZE : self.qend].lower() + buf[self.qend : self.qend + 4]


def analyze_reply(buf: bytes, asked: bytes = b"") -> ReplyInfo:
    """Walk an upstream reply and return its :class:`ReplyInfo`.

    `asked` is the question we sent (QNAME wire bytes, QTYPE, QCLASS); when the reply's
    question is exactly those bytes, QNAME (already valid: it is ours) is not walked again.

    Raises WireError when it is not a well-formed response with exactly one question:
    QR clear, QDCOUNT != 1, any bad name (compression loops included), a record or RDATA past
    the end, a malformed SOA in the authority section, an OPT outside the additional section or
    more than one, or trailing bytes.
    """
    # Byte by byte, not with struct: compiled by mypyc, indexing bytes is plain C on native
    # ints, where struct's tuples of objects cost several times the whole walk.
    end = len(buf)
    if end < HEADER_SIZE:
        raise WireError("reply shorter than a DNS header")
    flags = (buf[2] << 8) | buf[3]
    if not flags & FLAG_QR:
        raise WireError("reply without QR")
    if buf[4] or buf[5] != 1:
        raise WireError("reply QDCOUNT is not 1")
    an = (buf[6] << 8) | buf[7]
    ns = (buf[8] << 8) | buf[9]
    ar = (buf[10] << 8) | buf[11]
    same = bool(asked) and buf[HEADER_SIZE : HEADER_SIZE + len(asked)] == asked
    if same:  # compiled: a slice and a compare, no arg parsing
        pos = HEADER_SIZE + len(asked)
        qend = pos - 4
    else:
        qend = scan_qname(buf, HEADER_SIZE)
        pos = qend + 4
        if pos > end:
            raise WireError("question runs past the end of the reply")
    offsets: list[int] = []
    ttls: list[int] = []
    smallest = -1  # the smallest answer TTL so far; -1: no answer yet
    soa_ttl = soa_min = -1
    soa_index = -1
    opt_start = opt_end = opt_index = -1
    ext_rcode = 0
    zeroed = False
    last_answer = an
    last_authority = an + ns
    for i in range(an + ns + ar):
        start = pos
        if pos + 1 < end and buf[pos] == 0xC0 and buf[pos + 1] == 0x0C:
            pos += 2  # a pointer to QNAME, already walked: the usual owner of an answer
        elif pos < end and buf[pos] == 0:
            pos += 1  # the root: the OPT record's owner
        else:
            pos = skip_name(buf, pos, end)
        if pos + 10 > end:
            raise WireError("record header runs past the end of the reply")
        rtype = (buf[pos] << 8) | buf[pos + 1]
        ttl = (buf[pos + 4] << 24) | (buf[pos + 5] << 16) | (buf[pos + 6] << 8) | buf[pos + 7]
        rdend = pos + 10 + ((buf[pos + 8] << 8) | buf[pos + 9])
        if rdend > end:
            raise WireError("RDATA runs past the end of the reply")
        if rtype == TYPE_OPT:
            if i < last_authority or pos != start + 1 or opt_start >= 0:
                raise WireError("misplaced or repeated OPT record")
            opt_start, opt_end, opt_index = start, rdend, i - last_authority
            ext_rcode = ttl >> 24
        else:
            if ttl & _TTL_TOP:
                ttl = 0
                zeroed = True
            if i < last_answer:
                if smallest < 0 or ttl < smallest:
                    smallest = ttl
            elif rtype == TYPE_SOA and i < last_authority and soa_index < 0:
                soa_ttl = ttl
                soa_min = _soa_minimum(buf, pos + 10, rdend)
                soa_index = len(offsets)
            offsets.append(pos + 4)
            ttls.append(ttl)
        pos = rdend
    if pos != end:
        raise WireError("trailing bytes after the last record")
    min_ttl = None if smallest < 0 else smallest
    mid = (buf[0] << 8) | buf[1]
    rcode = (ext_rcode << 4) | (flags & 0xF)
    neg_ttl: int | None = None
    # NXDOMAIN, NODATA, and a CNAME chain ending in either: an authority SOA bounds how long
    # the reply may be kept (RFC 2308 5). A positive answer has no SOA in its authority.
    if soa_index >= 0 and rcode in (NXDOMAIN, NOERROR):
        neg_ttl = min(soa_ttl, soa_min)
    return ReplyInfo(
        mid,
        flags,
        rcode,
        qend,
        an,
        offsets,
        ttls,
        min_ttl,
        neg_ttl,
        soa_index,
        opt_start,
        opt_end,
        opt_index,
        zeroed,
        same,
    )


def _soa_minimum(buf: bytes, pos: int, end: int) -> int:
    """Return SOA MINIMUM from RDATA buf[pos:end]; its two names and five integers must fill
    the RDATA exactly (RFC 1035 3.3.13). Values with the top bit set read as 0."""
    pos = skip_name(buf, pos, end)
    pos = skip_name(buf, pos, end)
    if pos + 20 != end:
        raise WireError("SOA RDATA has the wrong length")
    pos += 16
    minimum = (buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
    return 0 if minimum & _TTL_TOP else minimum


def strip_opt(buf: bytes, info: ReplyInfo) -> tuple[bytes, ReplyInfo]:
    """Return the reply without its OPT record (EDNS is hop-by-hop, RFC 6891 6.1.1), and its info.

    When the OPT record is last and carries no extended rcode (the usual case) it is cut off
    and `info` stays valid. Otherwise the result is analyzed again. When records follow it,
    they are dropped too: cutting the OPT out from between them would move
    names that later compression pointers refer to. Dropping additional records is safe; they
    are optional data. Raises WireError only if the shortened reply does not parse.
    """
    return _without_opt(buf, info, buf[2:4])


def _without_opt(buf: bytes, info: ReplyInfo, flags: bytes) -> tuple[bytes, ReplyInfo]:
    """:func:`strip_opt`, with the header's two flag bytes replaced by `flags` in the same copy."""
    start = info.opt_start
    if start < 0:
        return (buf if buf[2:4] == flags else b"".join((buf[:2], flags, buf[4:]))), info
    if info.opt_end == len(buf) and info.rcode <= 0xF:
        ar = ((buf[10] << 8) | buf[11]) - 1
        info.opt_start = info.opt_end = info.opt_index = -1
        return b"".join((buf[:2], flags, buf[4:10], u16(ar), buf[12:start])), info
    out = b"".join((buf[:2], flags, buf[4:10], u16(info.opt_index), buf[12:start]))
    return out, analyze_reply(out)


_AA_BIT: Final = FLAG_AA >> 8  # in the header's third byte
_RD_BIT: Final = FLAG_RD >> 8  # in the third too
_RA_BIT: Final = FLAG_RA  # in the fourth


def for_clients(buf: bytes, info: ReplyInfo) -> tuple[bytes, ReplyInfo]:
    """Return an upstream reply as we keep and serve it, and its info: OPT removed (as by
    :func:`strip_opt`), AA cleared, RA and RD set.

    We are not authoritative (RFC 1035 4.1.1: AA only from an authoritative server) and we do
    offer recursion; RD is the client's own, patched in when served. In the usual case (the
    OPT record last) this is one copy of the reply. Raises WireError like :func:`strip_opt`.
    """
    flags = BYTE[(buf[2] & ~_AA_BIT & 0xFF) | _RD_BIT] + BYTE[buf[3] | _RA_BIT]
    return _without_opt(buf, info, flags)


def pack_ttls(offsets: list[int], ttls: list[int]) -> bytes:
    """Return (offset, TTL) pairs packed 6 bytes each: the form a cache entry keeps them in
    (offsets below 64 KiB, TTLs below 2**31; the layout of `_TTL_AT`)."""
    if len(offsets) == 1:  # the usual positive answer: one record
        return ((offsets[0] << 32) | ttls[0]).to_bytes(6, "big")
    pairs = zip(offsets, ttls, strict=True)
    return b"".join([((o << 32) | t).to_bytes(6, "big") for o, t in pairs])


def render_ttls(template: bytes, packed: bytes, elapsed: int, base: int = 0) -> bytearray:
    """Return a copy of `template` with each TTL in `packed` (see :func:`pack_ttls`) set to
    max(0, ttl - elapsed). The offsets are a whole message's; `template` is that message
    without its first `base` bytes (a cached reply is kept without its ID: base 2)."""
    out = bytearray(template)
    pack = _TTL.pack_into
    for offset, ttl in _TTL_AT.iter_unpack(packed):
        pack(out, offset - base, ttl - elapsed if ttl > elapsed else 0)
    return out


_QUERY_COUNTS: Final = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # one question, one OPT
# Flags (RD, and RD+CD by the client's CD bit) and counts: the header after the ID.
_QUERY_HEADS: Final = (b"\x01\x00" + _QUERY_COUNTS, b"\x01\x10" + _QUERY_COUNTS)
_UPSTREAM_OPTS: Final = (write_opt(UPSTREAM_PAYLOAD, False), write_opt(UPSTREAM_PAYLOAD, True))


def build_query(
    qid: int, question: bytes, *, cd: bool, do: bool, payload: int = UPSTREAM_PAYLOAD
) -> bytes:
    """Return an upstream query: RD=1, the client's CD, and our own OPT with the client's DO.

    `question` is QNAME wire bytes followed by QTYPE and QCLASS.
    """
    opt = _UPSTREAM_OPTS[do] if payload == UPSTREAM_PAYLOAD else write_opt(payload, do)
    return b"".join((u16(qid), _QUERY_HEADS[cd], question, opt))


def error_reply(query: bytes, rcode: int, *, edns: bool = False) -> bytes | None:
    """Return a reply with `rcode` to `query`, echoing its question when it is readable.

    Keeps the client's ID, opcode, RD and CD; sets QR and RA. With `edns`, an OPT record is
    added (for BADVERS it carries the extended rcode, RFC 6891 6.1.3). Returns None when the
    query is shorter than a header (nothing to answer to).
    """
    if len(query) < HEADER_SIZE:
        return None
    mid, flags, qd, _an, _ns, _ar = HEADER.unpack_from(query, 0)
    question = b""
    if qd >= 1:
        try:
            qend = scan_qname(query, HEADER_SIZE)
            if qend + 4 <= len(query):
                question = query[HEADER_SIZE : qend + 4]
        except WireError:
            question = b""
    out_flags = FLAG_QR | (flags & 0x7900) | (flags & FLAG_CD) | FLAG_RA | (rcode & 0xF)
    opt = write_opt(MAX_UDP_SIZE, False, rcode >> 4) if edns or rcode > 0xF else b""
    head = HEADER.pack(mid, out_flags, 1 if question else 0, 0, 0, 1 if opt else 0)
    return head + question + opt


def truncated_reply(reply: bytes, qend: int, opt: bytes) -> bytes:
    """Return `reply` cut to header and question with TC=1, plus `opt` if given (RFC 2181 9)."""
    flags = ((reply[2] << 8) | reply[3]) | FLAG_TC
    head = reply[:2] + flags.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00"
    return head + (b"\x00\x01" if opt else b"\x00\x00") + reply[HEADER_SIZE : qend + 4] + opt
