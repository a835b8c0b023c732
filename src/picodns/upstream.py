"""Resolver, part 2: the upstream client. The only module that opens outbound sockets.

Rules kept here (RFC 5452, STYLE.md rule 6):
- Every upstream query gets a fresh ID from the OS CSPRNG.
- UDP source ports: each upstream has a small pool of connected UDP sockets, each bound by the
  kernel to its own random ephemeral port. A socket carries at most `MAX_SOCKET_USES` queries
  and is then retired (closed once its last reply is in) and replaced by a new socket on a new
  random port. An off-path spoofer must therefore guess a 16-bit ID and which of ~28,000
  ephemeral ports is open right now, and the set of open ports keeps moving; a socket per query
  would cost ~30 us of CPU per cache miss, which this policy amortises away. It never becomes
  one fixed socket per upstream.
- A reply is accepted only from the queried address and port (the socket is connected, and the
  source is checked again), with the ID sent and the same question (case-insensitive name,
  type, class). Anything else is counted and ignored, and the query keeps waiting until its
  deadline. Malformed replies (compression loops included) are ignored the same way.
- TC=1 over UDP: the same question is asked again over TCP of the same upstream (RFC 7766).
- Failover: upstreams are tried in health order (:func:`order`), all within one overall
  deadline; each attempt gets an equal share of the time left among the healthy upstreams
  still to try, so a black-holed first upstream cannot eat the whole budget, and a dead
  backup cannot halve a slow primary's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import Sequence
from typing import cast

from picodns.errors import REFUSED, SERVFAIL, UpstreamError, UpstreamTimeout, WireError
from picodns.message import ReplyInfo, analyze_reply, build_query
from picodns.metrics import Histogram
from picodns.wire import MAX_UDP_SIZE

__all__ = [
    "MAX_SOCKET_USES",
    "SOCKETS_PER_UPSTREAM",
    "Upstream",
    "UpstreamClient",
    "order",
]

SOCKETS_PER_UPSTREAM = 8  # connected UDP sockets kept open per upstream
MAX_SOCKET_USES = 64  # queries per socket before it is retired for a new random port
RETRY_MIN = 1.0  # seconds an upstream stays marked down after its first failure
RETRY_MAX = 30.0  # ...doubling per consecutive failure up to this

_log = logging.getLogger("picodns.upstream")
FAILURE_REASONS = ("timeout", "servfail", "refused", "mismatch", "network", "malformed")


class _Random:
    """16-bit IDs from the OS CSPRNG, read in blocks so a query costs no syscall."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def id16(self) -> int:
        if self._pos >= len(self._buf):
            self._buf = os.urandom(4096)
            self._pos = 0
        pos = self._pos
        self._pos = pos + 2
        return (self._buf[pos] << 8) | self._buf[pos + 1]


_rng = _Random()


class _Channel(asyncio.DatagramProtocol):
    """One connected UDP socket to one upstream, carrying up to MAX_SOCKET_USES queries."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[asyncio.Future[tuple[bytes, ReplyInfo]], bytes]] = {}
        self.uses = 0
        self.retired = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        up = self.upstream
        if addr[0] != up.host or addr[1] != up.port or len(data) < 12:
            up.failures["mismatch"] += 1
            return
        waiter = self.pending.get((data[0] << 8) | data[1])
        if waiter is None:
            up.failures["mismatch"] += 1
            return
        future, question = waiter
        try:
            info = analyze_reply(data)
        except WireError:
            up.failures["malformed"] += 1
            return
        if info.question(data) != question:
            up.failures["mismatch"] += 1
            return
        del self.pending[info.id]
        if not future.done():
            future.set_result((data, info))
        self._maybe_close()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends on a connected socket: fail fast, every query on it,
        # and take the socket out of the pool so the next query gets a fresh one.
        self._fail_all(UpstreamError(f"network error: {exc}", "network"))
        self._maybe_close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(UpstreamError("socket closed", "network"))
        self.transport = None

    def _fail_all(self, error: UpstreamError) -> None:
        for future, _question in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()
        self.retired = True
        self.upstream.discard(self)

    def forget(self, qid: int, future: asyncio.Future[tuple[bytes, ReplyInfo]]) -> None:
        """Drop the query `future` waits for, if it is still pending (timed out, cancelled).

        Only that query's own entry: once its reply arrived, its ID is free again and may
        already belong to a newer query on this socket, which must not lose its entry."""
        waiter = self.pending.get(qid)
        if waiter is not None and waiter[0] is future:
            del self.pending[qid]
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self.retired and not self.pending and self.transport is not None:
            self.transport.close()
            self.transport = None


class Upstream:
    """One upstream resolver: its address, health, latency and counters."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.healthy = True
        self.consecutive_failures = 0
        self.retry_at = 0.0
        self.srtt = 0.0  # smoothed round-trip time in seconds (RFC 6298-style, alpha 1/8)
        self.queries = 0
        self.tcp_queries = 0
        self.failures = dict.fromkeys(FAILURE_REASONS, 0)
        self.latency = Histogram()  # seconds from first send to an accepted answer
        self._channels: list[_Channel] = []
        self._opening = 0  # sockets being opened right now
        self._opened = asyncio.Event()  # wakes callers waiting for a socket being opened

    def __repr__(self) -> str:
        return f"Upstream({self.host!r}, {self.port})"

    @property
    def address(self) -> str:
        """host:port with IPv6 in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def mark_success(self, rtt: float) -> None:
        """Record an answer: healthy again, latency observed."""
        if not self.healthy:
            _log.warning("upstream %s is back up", self.address)
        self.healthy = True
        self.consecutive_failures = 0
        self.srtt = rtt if self.srtt == 0.0 else self.srtt + (rtt - self.srtt) / 8
        self.latency.observe(rtt)

    def mark_failure(self, reason: str, now: float) -> None:
        """Record a failed attempt: counted by reason, marked down with exponential backoff."""
        self.failures[reason] += 1
        self.consecutive_failures += 1
        if self.healthy:
            _log.warning("upstream %s is down (%s)", self.address, reason)
        self.healthy = False
        backoff = min(RETRY_MAX, RETRY_MIN * 2 ** (self.consecutive_failures - 1))
        self.retry_at = now + backoff

    async def _channel(self) -> _Channel:
        """Return a socket for one more query: a random open one once the pool is full.

        Sockets being opened count toward the pool, so a burst of misses opens at most
        SOCKETS_PER_UPSTREAM of them; callers that find none open yet wait for the first.
        """
        channels = self._channels
        while not channels and self._opening >= SOCKETS_PER_UPSTREAM:
            self._opened.clear()
            await self._opened.wait()  # set when an opening ends, whether it worked or not
        if len(channels) + self._opening >= SOCKETS_PER_UPSTREAM:
            channel = random.choice(channels)
        else:
            self._opening += 1
            try:
                loop = asyncio.get_running_loop()
                _transport, channel = await loop.create_datagram_endpoint(
                    lambda: _Channel(self), remote_addr=(self.host, self.port), family=self.family
                )
            finally:
                self._opening -= 1
                self._opened.set()
            channels.append(channel)
        channel.uses += 1
        if channel.uses >= MAX_SOCKET_USES and channel in channels:
            channels.remove(channel)
            channel.retired = True
        return channel

    async def exchange_udp(
        self, question: bytes, cd: bool, do: bool, timeout: float
    ) -> tuple[bytes, ReplyInfo]:
        """Ask over UDP; return the first matching reply's bytes and info.

        Raises UpstreamTimeout when no matching reply arrives within `timeout`, UpstreamError
        on a network error. Mismatched and malformed replies are counted and ignored.
        """
        try:
            channel = await self._channel()
        except OSError as exc:  # no route, no file descriptors...: this upstream failed
            raise UpstreamError(f"network error: {exc}", "network") from None
        transport = channel.transport
        if transport is None or transport.is_closing():
            self.discard(channel)
            raise UpstreamError("socket closed", "network")
        qid = _rng.id16()
        while qid in channel.pending:
            qid = _rng.id16()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bytes, ReplyInfo]] = loop.create_future()
        channel.pending[qid] = (future, question)
        self.queries += 1
        transport.sendto(build_query(qid, question, cd=cd, do=do))
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()
            channel.forget(qid, future)

    async def exchange_tcp(
        self, question: bytes, cd: bool, do: bool, timeout: float
    ) -> tuple[bytes, ReplyInfo]:
        """Ask over TCP (2-byte length framing, RFC 7766 8); return the matching reply and info.

        Raises UpstreamTimeout on timeout, UpstreamError on a network error, a malformed or a
        mismatched reply (a TCP stream cannot carry a spoofed reply past a mismatch).
        """
        qid = _rng.id16()
        query = build_query(qid, question, cd=cd, do=do, payload=MAX_UDP_SIZE)
        self.tcp_queries += 1
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                try:
                    writer.write(len(query).to_bytes(2, "big") + query)
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
                finally:
                    writer.close()
        except TimeoutError:
            raise UpstreamTimeout() from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise UpstreamError(f"network error: {exc}", "network") from None
        try:
            info = analyze_reply(data)
        except WireError as exc:
            raise UpstreamError(f"malformed reply over TCP: {exc}", "malformed") from None
        if info.id != qid or info.question(data) != question:
            raise UpstreamError("mismatched reply over TCP", "mismatch")
        return data, info

    def discard(self, channel: _Channel) -> None:
        """Take a failed socket out of the pool (it closes once its queries are done)."""
        channel.retired = True
        if channel in self._channels:
            self._channels.remove(channel)

    def close(self) -> None:
        """Close every UDP socket."""
        for channel in self._channels:
            channel.retired = True
            if channel.transport is not None:
                channel.transport.close()
        self._channels.clear()


def _expire(future: asyncio.Future[tuple[bytes, ReplyInfo]]) -> None:
    if not future.done():
        future.set_exception(UpstreamTimeout())


def order(upstreams: Sequence[Upstream], now: float) -> list[Upstream]:
    """Return the upstreams in the order to try them: the policy, and nothing else.

    Healthy upstreams in configured order, then those marked down. A down upstream whose retry
    time has come goes first once (an in-band probe), and its retry time moves on by its
    backoff, so only one query per interval pays for probing it.
    """
    healthy = [u for u in upstreams if u.healthy]
    down = [u for u in upstreams if not u.healthy]
    for u in down:
        if now >= u.retry_at:
            backoff = min(RETRY_MAX, RETRY_MIN * 2 ** (u.consecutive_failures - 1))
            u.retry_at = now + backoff
            down.remove(u)
            return [u, *healthy, *down]
    return healthy + down


class UpstreamClient:
    """Asks a question of the upstreams with failover, within one overall timeout."""

    def __init__(self, upstreams: Sequence[Upstream], timeout: float) -> None:
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.tcp_fallbacks = 0

    def close(self) -> None:
        """Close every upstream's sockets."""
        for upstream in self.upstreams:
            upstream.close()

    async def query(
        self, question: bytes, cd: bool = False, do: bool = False
    ) -> tuple[bytes, ReplyInfo]:
        """Return a validated reply (raw bytes, OPT still in) and its info for `question`.

        `question` is QNAME wire bytes + QTYPE + QCLASS. Upstreams are tried in :func:`order`;
        one that times out, errors, or answers SERVFAIL/REFUSED is marked down and the next is
        tried. Raises UpstreamError when every upstream failed or the deadline passed.
        """
        clock = time.monotonic
        deadline = clock() + self.timeout
        candidates = order(self.upstreams, clock())
        last: UpstreamError = UpstreamTimeout()
        for index, upstream in enumerate(candidates):
            start = clock()
            remaining = deadline - start
            if remaining <= 0:
                break
            # Healthy upstreams share the time left; one marked down gets a share only when
            # it is being probed, so a dead backup cannot halve a slow primary's time.
            sharing = sum(1 for u in candidates[index:] if u.healthy or u is upstream)
            budget = remaining / sharing
            try:
                reply = await self._attempt(upstream, question, cd, do, budget, deadline)
            except UpstreamError as exc:
                upstream.mark_failure(exc.reason, clock())
                last = exc
                continue
            upstream.mark_success(clock() - start)
            return reply
        raise last

    async def _attempt(
        self,
        upstream: Upstream,
        question: bytes,
        cd: bool,
        do: bool,
        budget: float,
        deadline: float,
    ) -> tuple[bytes, ReplyInfo]:
        data, info = await upstream.exchange_udp(question, cd, do, budget)
        if info.truncated:  # TC=1: ask again over TCP with the time left (RFC 7766 5)
            self.tcp_fallbacks += 1
            data, info = await upstream.exchange_tcp(question, cd, do, deadline - time.monotonic())
        if info.rcode > 0xF:  # an extended rcode (BADVERS, BADCOOKIE...) to our plain query
            raise UpstreamError(f"{upstream.address} answered rcode {info.rcode}", "malformed")
        if info.rcode == SERVFAIL:
            raise UpstreamError(f"{upstream.address} answered SERVFAIL", "servfail")
        if info.rcode == REFUSED:
            raise UpstreamError(f"{upstream.address} answered REFUSED", "refused")
        return data, info
