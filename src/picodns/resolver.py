"""Resolver: the cache fast path, coalescing, forwarding on a miss, and the error a client gets.

The two paths (ARCHITECTURE.md):
- :meth:`Resolver.lookup` is synchronous: raw query + `now` -> reply bytes, or None for "not
  answerable from the cache". One scan of the question, one dict lookup, a copy with the client's
  ID and spelling patched in. No await, no parse, no logging.
- :meth:`Resolver.resolve` is the miss path: full validation (FORMERR/NOTIMP/BADVERS/REFUSED as
  the RFCs say), coalescing of identical in-flight questions, the upstream client, storing.

Every reply leaves through :func:`personalize`, so the client's ID, RD bit and question spelling
(RFC 4343) are restored on both paths, and the size limit is applied the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from picodns.cache import Cache, Entry
from picodns.errors import (
    BADVERS,
    FORMERR,
    NOTIMP,
    REFUSED,
    SERVFAIL,
    UpstreamError,
    WireError,
)
from picodns.message import KEY_CD, KEY_DO, error_reply, parse_query, scan_query, strip_opt
from picodns.message import truncated_reply as _truncated
from picodns.upstream import UpstreamClient
from picodns.wire import (
    FLAG_AA,
    FLAG_RA,
    FLAG_RD,
    HEADER_SIZE,
    MAX_TCP_SIZE,
    MIN_UDP_PAYLOAD,
    scan_qname,
)

__all__ = ["Resolver", "personalize"]

_BYTES = tuple(bytes((i,)) for i in range(256))
_QTYPE_OPT = 41
_REASONS = {FORMERR: "formerr", NOTIMP: "notimp", BADVERS: "badvers"}
_AA = FLAG_AA >> 8  # in the header's third byte
_RD = FLAG_RD >> 8  # in the third too: stored replies have RD=1, personalize copies the client's
_RA = FLAG_RA  # in the fourth
_REFUSED_QTYPES = frozenset((251, 252))  # IXFR, AXFR: zone transfers are not forwarded
_NOTIMP_QTYPES = frozenset((253, 254))  # MAILB, MAILA: obsolete (RFC 2505, RFC 3597)


def _walks_to(query: bytes, qend: int) -> bool:
    """True when QNAME, walked label by label, is valid and ends exactly at `qend`."""
    try:
        return scan_qname(query, HEADER_SIZE) == qend
    except WireError:
        return False


def personalize(entry: Entry, query: bytes, qend: int, limit: int, plain: bool, tcp: bool) -> bytes:
    """Return `entry`'s rendered reply as the answer to `query`.

    Patches in the client's ID, RD bit and question spelling (`plain`: RD=1 and spelled as
    stored, so only the ID changes); adds our OPT when the client sent one (`limit` > 0) and
    it fits. Over UDP, a reply larger than the client's limit (512 without EDNS) becomes a TC=1
    reply with just the question, so the client retries over TCP.
    """
    if limit and (not tcp or entry.size_opt <= MAX_TCP_SIZE):
        if entry.size_opt > limit and not tcp:
            return _truncated(_patch(entry.tail_opt, query, qend), qend, entry.opt)
        if plain and entry.canonical:
            return query[:2] + entry.tail_opt
        return _patch(entry.tail_opt, query, qend)
    if entry.size > MIN_UDP_PAYLOAD and not tcp:
        return _truncated(_patch(entry.tail, query, qend), qend, b"")
    if plain and entry.canonical:
        return query[:2] + entry.tail
    return _patch(entry.tail, query, qend)


def _patch(tail: bytes, query: bytes, qend: int) -> bytes:
    """The reply (`tail` is it without the ID) with the query's ID, RD bit and QNAME spelling
    (same length as stored: same key)."""
    flags = _BYTES[(tail[0] & 0xFE) | (query[2] & 1)]
    return query[:2] + flags + tail[1:10] + query[HEADER_SIZE:qend] + tail[qend - 2 :]


class Resolver:
    """Answers raw queries from the cache, or by asking the upstreams."""

    def __init__(
        self,
        cache: Cache,
        client: UpstreamClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.client = client
        self.clock = clock
        self._inflight: dict[bytes, asyncio.Future[Entry | None]] = {}
        # Counters, read by metrics. Cache hits are counted by the cache's entries; these
        # count what the slow path answered itself.
        self.coalesced = 0
        self.upstream_failures = 0
        self.queries: dict[int, int] = {}  # by qtype
        self.responses: dict[int, int] = {}  # by rcode
        self.malformed: dict[str, int] = {}  # by reason

    def lookup(self, query: bytes, now: float, tcp: bool = False) -> bytes | None:
        """Answer `query` from the cache; return the reply bytes, or None on a miss.

        None also means "not a plain query": the slow path validates it. Never raises.
        """
        scanned = scan_query(query)
        if scanned is None:
            return None
        entry = self.cache.get(scanned[0], now)
        if entry is None:
            return None
        return personalize(entry, query, scanned[1], scanned[2], scanned[3], tcp)

    async def resolve(self, query: bytes, tcp: bool = False) -> bytes | None:
        """Answer `query` fully: validate, then cache or upstream; return reply bytes.

        Returns None when no reply may be sent (shorter than a header, or QR=1). A malformed
        query gets FORMERR (or NOTIMP/BADVERS), zone transfers get REFUSED, and a question no
        upstream could answer gets SERVFAIL. Never raises for anything the client sent.
        """
        scanned = scan_query(query)
        if scanned is not None and _walks_to(query, scanned[1]):
            # A plain query whose scan is validated by walking QNAME: everything parse_query
            # would check is checked (counts, OPT, tail), without building the message.
            key, qend, limit, plain = scanned
            qtype = (key[-5] << 8) | key[-4]
        else:
            try:
                q = parse_query(query)
            except WireError as exc:
                return self._reject(query, exc)
            key, qend, limit, plain, qtype = q.key, q.qend, q.limit, False, q.qtype
        if qtype == _QTYPE_OPT:
            return self._reject(query, WireError("OPT as QTYPE"), limit > 0)
        if qtype in _REFUSED_QTYPES or qtype in _NOTIMP_QTYPES:
            return self._answer_error(
                query, qtype, REFUSED if qtype in _REFUSED_QTYPES else NOTIMP, limit
            )
        entry = self.cache.get(key, self.clock(), count_miss=False)
        if entry is None:  # the entry counts its own hits; count the rest here
            entry = await self._fetch(key)
            if entry is None:
                return self._answer_error(query, qtype, SERVFAIL, limit)
            self._count(qtype, entry.template[3] & 0xF)
        return personalize(entry, query, qend, limit, plain, tcp)

    def _count(self, qtype: int, rcode: int) -> None:
        self.queries[qtype] = self.queries.get(qtype, 0) + 1
        self.responses[rcode] = self.responses.get(rcode, 0) + 1

    def _answer_error(self, query: bytes, qtype: int, rcode: int, limit: int) -> bytes | None:
        self._count(qtype, rcode)
        return error_reply(query, rcode, edns=limit > 0)

    def _reject(self, query: bytes, exc: WireError, edns: bool = False) -> bytes | None:
        """Count a malformed query by reason; return what it gets (None: dropped)."""
        if exc.rcode is None:
            reason = "short" if len(query) < HEADER_SIZE else "response"
        else:
            reason = _REASONS.get(exc.rcode, "formerr")
        self.malformed[reason] = self.malformed.get(reason, 0) + 1
        if exc.rcode is None:
            return None
        self.responses[exc.rcode] = self.responses.get(exc.rcode, 0) + 1
        return error_reply(query, exc.rcode, edns=edns or exc.rcode > 0xF)

    def servfail(self, query: bytes) -> bytes | None:
        """Return SERVFAIL for `query` (used when handling it failed unexpectedly)."""
        return error_reply(query, SERVFAIL)

    async def _fetch(self, key: bytes) -> Entry | None:
        """Return the entry for `key` from the upstreams, asking at most once at a time."""
        waiting = self._inflight.get(key)
        if waiting is not None:
            self.coalesced += 1
            return await asyncio.shield(waiting)
        future: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        result: Entry | None = None
        try:
            result = await self._forward(key)
        except UpstreamError:
            self.upstream_failures += 1
        finally:
            del self._inflight[key]
            future.set_result(result)
        return result

    async def _forward(self, key: bytes) -> Entry:
        flags = key[-1]
        do = bool(flags & KEY_DO)
        data, info = await self.client.query(key[:-1], cd=bool(flags & KEY_CD), do=do)
        try:
            data, info = strip_opt(data, info)
        except WireError as exc:
            raise UpstreamError(f"malformed reply: {exc}", "malformed") from None
        # We are not authoritative (RFC 1035 4.1.1: AA only from an authoritative server), and
        # we do offer recursion: clear AA, set RA (and RD, which personalize then sets to the
        # client's), once, before the reply is stored.
        if data[2] & _AA or not data[2] & _RD or not data[3] & _RA:
            data = data[:2] + bytes(((data[2] & ~_AA & 0xFF) | _RD, data[3] | _RA)) + data[4:]
        now = self.clock()
        entry = self.cache.put(key, data, info, now)
        return entry if entry is not None else Entry.transient(data, do, now)
