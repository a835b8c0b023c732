"""Resolver: the cache fast path, coalescing, forwarding on a miss, and the error a client gets.

The two paths (ARCHITECTURE.md):
- :meth:`Resolver.lookup` is synchronous: raw query + `now` -> reply bytes, or None for "not
  answerable from the cache". One scan of the question, one dict lookup, a copy with the client's
  ID and spelling patched in. No await, no parse, no logging.
- :meth:`Resolver.start` is the miss path: full validation (FORMERR/NOTIMP/BADVERS/REFUSED as
  the RFCs say), coalescing of identical in-flight questions, the upstream client, storing. It
  is a chain of callbacks: the query goes upstream from the caller's callback, and the answer is
  stored and sent from the upstream socket's. :meth:`Resolver.resolve` wraps it for coroutines.

Every reply leaves through :func:`personalize`, so the client's ID, RD bit and question spelling
(RFC 4343) are restored on both paths, and the size limit is applied the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

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
from picodns.message import (
    KEY_CD,
    KEY_DO,
    ReplyInfo,
    Scan,
    error_reply,
    for_clients,
    parse_query,
    remember_scan,
    scan_query,
)
from picodns.message import truncated_reply as _truncated
from picodns.upstream import Answer, UpstreamClient
from picodns.wire import (
    BYTE,
    HEADER_SIZE,
    MAX_TCP_SIZE,
    MIN_UDP_PAYLOAD,
)

__all__ = ["Resolver", "personalize"]

_QTYPE_OPT: Final = 41
_REASONS: Final = {FORMERR: "formerr", NOTIMP: "notimp", BADVERS: "badvers"}
# Compared as a range, not looked up in a set: compiled, that is two C comparisons a miss.
_REFUSED_FIRST: Final = 251  # IXFR and AXFR (251, 252): zone transfers are not forwarded
_REFUSED_LAST: Final = 252
_NOTIMP_LAST: Final = 254  # MAILB and MAILA (253, 254): obsolete (RFC 2505, RFC 3597)
_log = logging.getLogger("picodns.resolver")
# A client query waiting for an upstream answer: the query, where its question ends, its UDP
# limit, whether it is spelled as stored, over TCP?, its qtype, and where the reply goes.
_Waiter = tuple[bytes, int, int, bool, bool, int, Callable[[bytes | None], None]]


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
    flags = BYTE[(tail[0] & 0xFE) | (query[2] & 1)]
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
        self._inflight: dict[bytes, _Fetch] = {}
        self._missed: bytes | None = None  # the last query lookup() missed, and its scan
        self._missed_scan: Scan | None = None
        # Counters, read by metrics. Cache hits are counted by the cache's entries; these
        # count what the slow path answered itself.
        self.coalesced = 0
        self.upstream_failures = 0
        self.errors = 0  # unexpected exceptions caught at the miss path's callback edges
        # Answers by (qtype << 16) | rcode: one dict update per answer instead of two.
        self._answered: dict[int, int] = {}
        self._rejected: dict[int, int] = {}  # malformed queries answered, by rcode
        self.malformed: dict[str, int] = {}  # by reason

    def lookup(self, query: bytes, now: float, tcp: bool = False) -> bytes | None:
        """Answer `query` from the cache; return the reply bytes, or None on a miss.

        None also means "not a plain query": the slow path validates it. Never raises.
        """
        # Compiled, scan_query is a C call that checks its memory first: one slice and one
        # dict lookup for a query answered from the cache before.
        scanned = scan_query(query)
        if scanned is None:
            self._missed, self._missed_scan = query, None
            return None
        # Unpacked once: compiled, each index into the tuple would unbox all of it.
        key, qend, limit, plain, remembered, slot = scanned
        entry = self.cache.get(key, now, True, slot)
        if entry is None:
            # A miss goes on to start() with this very query: it takes the scan from here.
            self._missed, self._missed_scan = query, scanned
            return None
        if not remembered:  # a hit: worth remembering (a miss is not, see scan_query)
            remember_scan(query, scanned, entry.key)
        return personalize(entry, query, qend, limit, plain, tcp)

    def start(self, query: bytes, tcp: bool, done: Callable[[bytes | None], None]) -> None:
        """Answer `query` fully; call `done` exactly once, now or later, with the reply bytes.

        None means no reply may be sent (shorter than a header, or QR=1). A malformed query gets
        FORMERR (or NOTIMP/BADVERS), zone transfers get REFUSED, and a question no upstream
        could answer gets SERVFAIL. A miss is sent upstream from this call and answered from
        the upstream socket's callback: no task, no await. Never raises for anything the
        client sent.
        """
        if query is self._missed:  # just looked up and missed: scanned already
            scanned = self._missed_scan
            self._missed = None
        else:
            scanned = scan_query(query)
        if scanned is not None:
            # A plain query: the scan checked everything parse_query would (counts, QNAME,
            # OPT, tail), without building the message.
            key, qend, limit, plain, _remembered, slot = scanned
            qtype = (key[-5] << 8) | key[-4]
        else:
            try:
                q = parse_query(query)
            except WireError as exc:
                done(self._reject(query, exc))
                return
            key, qend, limit, plain, qtype = q.key, q.qend, q.limit, False, q.qtype
            slot = -1
        if qtype == _QTYPE_OPT:
            done(self._reject(query, WireError("OPT as QTYPE"), limit > 0))
            return
        if _REFUSED_FIRST <= qtype <= _NOTIMP_LAST:  # IXFR, AXFR, MAILB, MAILA
            rcode = REFUSED if qtype <= _REFUSED_LAST else NOTIMP
            done(self._answer_error(query, qtype, rcode, limit))
            return
        entry = self.cache.get(key, self.clock(), False, slot)
        if entry is not None:  # the entry counts its own hits
            done(personalize(entry, query, qend, limit, plain, tcp))
            return
        waiter = (query, qend, limit, plain, tcp, qtype, done)
        fetch = self._inflight.get(key)
        if fetch is not None:  # the same question is being asked: wait for its answer
            self.coalesced += 1
            fetch.waiters.append(waiter)
            return
        fetch = _Fetch(self, key, slot, waiter)
        self._inflight[key] = fetch
        flags = key[-1]
        try:
            self.client.ask(key[:-1], bool(flags & KEY_CD), bool(flags & KEY_DO), fetch.answered)
        except BaseException:  # nothing will answer this fetch: later questions must not wait
            if self._inflight.get(key) is fetch:
                del self._inflight[key]
            raise

    async def resolve(self, query: bytes, tcp: bool = False) -> bytes | None:
        """:meth:`start` for a coroutine: return the reply (None: no reply may be sent)."""
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()

        def done(reply: bytes | None) -> None:
            if not future.done():
                future.set_result(reply)

        self.start(query, tcp, done)
        return await future

    def _count(self, qtype: int, rcode: int) -> None:
        key = (qtype << 16) | rcode
        self._answered[key] = self._answered.get(key, 0) + 1

    @property
    def queries(self) -> dict[int, int]:
        """Valid queries the slow path answered, by qtype (cache hits are counted by entries)."""
        out: dict[int, int] = {}
        for key, n in self._answered.items():
            out[key >> 16] = out.get(key >> 16, 0) + n
        return out

    @property
    def responses(self) -> dict[int, int]:
        """Responses the slow path sent, by rcode (malformed queries' included)."""
        out = dict(self._rejected)
        for key, n in self._answered.items():
            out[key & 0xFFFF] = out.get(key & 0xFFFF, 0) + n
        return out

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
        self._rejected[exc.rcode] = self._rejected.get(exc.rcode, 0) + 1
        return error_reply(query, exc.rcode, edns=edns or exc.rcode > 0xF)

    def servfail(self, query: bytes) -> bytes | None:
        """Return SERVFAIL for `query` (used when handling it failed unexpectedly)."""
        return error_reply(query, SERVFAIL)

    def _store(self, key: bytes, slot: int, data: bytes, info: ReplyInfo) -> Entry:
        """Store an upstream's validated reply for `key`; return its entry (transient when it
        may not be cached). Raises UpstreamError when the reply cannot be used."""
        try:
            data, info = for_clients(data, info)
        except WireError as exc:
            raise UpstreamError(f"malformed reply: {exc}", "malformed") from None
        now = self.clock()
        entry = self.cache.put(key, data, info, now, slot)
        return entry if entry is not None else Entry.transient(data, bool(key[-1] & KEY_DO), now)


class _Fetch:
    """One question in flight upstream, and every client query waiting for its answer."""

    __slots__ = ("key", "resolver", "slot", "waiters")

    def __init__(self, resolver: Resolver, key: bytes, slot: int, first: _Waiter) -> None:
        self.resolver = resolver
        self.key = key
        self.slot = slot  # the key's cache slot, or -1: the cache computes it
        self.waiters = [first]

    def answered(self, answer: Answer) -> None:
        """The upstream client's `done`: store the answer, then answer every waiter."""
        resolver = self.resolver
        del resolver._inflight[self.key]
        entry: Entry | None = None
        if isinstance(answer, UpstreamError):
            resolver.upstream_failures += 1
        else:
            try:
                entry = resolver._store(self.key, self.slot, answer[0], answer[1])
            except UpstreamError:
                resolver.upstream_failures += 1
            except Exception:  # the callback edge: the waiters still get SERVFAIL
                resolver.errors += 1
                _log.exception("unexpected error while storing an upstream reply")
        for query, qend, limit, plain, tcp, qtype, done in self.waiters:
            try:
                if entry is None:
                    reply = resolver._answer_error(query, qtype, SERVFAIL, limit)
                else:
                    resolver._count(qtype, entry.rcode)
                    reply = personalize(entry, query, qend, limit, plain, tcp)
            except Exception:
                resolver.errors += 1
                _log.exception("unexpected error while answering a query")
                reply = error_reply(query, SERVFAIL)
            try:
                done(reply)
            except Exception:  # one client's failure must not cost the others their answers
                resolver.errors += 1
                _log.exception("unexpected error while sending a reply")
