"""Resolver, part 2: the upstream client. The only module that opens outbound sockets.

The miss path is a chain of callbacks, not tasks: :meth:`UpstreamClient.ask` sends the query
from the caller's own callback and returns; the reply is matched, validated and handed to the
caller's `done` from the socket's read callback. No task, no future and no loop timer per
query: timeouts live in buckets of 10 ms with one loop timer armed for the earliest.

Rules kept here (RFC 5452, STYLE.md rule 6):
- Every upstream query gets a fresh ID from the OS CSPRNG.
- UDP source ports: each upstream has a small pool of connected UDP sockets, each bound by the
  kernel to its own random ephemeral port. A socket carries at most `MAX_SOCKET_USES` queries
  and is then retired (closed once its last reply is in or timed out) and replaced by a new
  socket on a new random port. An off-path spoofer must therefore guess a 16-bit ID and which
  of ~28,000 ephemeral ports is open right now, and the set of open ports keeps moving; a
  socket per query would cost ~30 us of CPU per cache miss, which this policy amortises away.
- A reply is accepted only from the queried address and port (the socket is connected: the
  kernel delivers nothing else to it), with the ID sent and the same question (case-insensitive
  name, type, class). Anything else is counted and ignored, and the query keeps waiting until
  its deadline. Malformed replies (compression loops included) are ignored the same way.
- TC=1 over UDP: the same question is asked again over TCP of the same upstream (RFC 7766).
- Failover: upstreams are tried in health order (:func:`order`), all within one overall
  deadline; each attempt gets an equal share of the time left among the healthy upstreams
  still to try, so a black-holed first upstream cannot eat the whole budget, and a dead
  backup cannot halve a slow primary's.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Final

from picodns.errors import (
    REFUSED,
    SERVFAIL,
    UpstreamError,
    UpstreamTimeout,
    WireError,
)
from picodns.message import ReplyInfo, analyze_reply, build_query
from picodns.metrics import Histogram
from picodns.wire import FLAG_TC, MAX_UDP_SIZE

__all__ = [
    "MAX_SOCKET_USES",
    "SOCKETS_PER_UPSTREAM",
    "Answer",
    "Upstream",
    "UpstreamClient",
    "order",
]

SOCKETS_PER_UPSTREAM = 8  # connected UDP sockets kept open per upstream
MAX_SOCKET_USES = 64  # queries per socket before it is retired for a new random port
RETRY_MIN: Final = 1.0  # seconds an upstream stays marked down after its first failure
RETRY_MAX: Final = 30.0  # ...doubling per consecutive failure up to this
RECV_SIZE: Final = 65535  # a UDP reply larger than we advertised is still read whole, then judged
TIMER_SLACK: Final = 0.01  # seconds a timeout may fire late, so one loop timer serves many
_BUCKETS_PER_SECOND: Final = 100  # 1 / TIMER_SLACK: deadlines are kept in slots this wide
_NEVER: Final = 1 << 62  # "no bucket": later than any

_log = logging.getLogger("picodns.upstream")
FAILURE_REASONS: Final = ("timeout", "servfail", "refused", "mismatch", "network", "malformed")

# What `ask` delivers: the reply (raw bytes, OPT still in) and its info, or why it failed.
Answer = tuple[bytes, ReplyInfo] | UpstreamError
Done = Callable[[Answer], None]


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


_rng: Final = _Random()


class _Channel:
    """One connected, non-blocking UDP socket to one upstream, read by a loop reader callback.

    `pending` maps each ID in flight on this socket to the exchange waiting for it."""

    __slots__ = ("fd", "loop", "pending", "retired", "sock", "upstream", "uses")

    def __init__(self, upstream: Upstream, loop: asyncio.AbstractEventLoop) -> None:
        sock = socket.socket(upstream.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((upstream.host, upstream.port))  # an IP literal: no lookup, no wait
            loop.add_reader(sock.fileno(), self._readable)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.upstream = upstream
        self.pending: dict[int, _Exchange] = {}
        self.uses = 0
        self.retired = False

    def _readable(self) -> None:
        # One datagram per readable event. Reading on until the socket is empty costs a failed
        # recv() and a BlockingIOError per event, and at the rates where latency matters each
        # event brings one reply: 7% of a miss's CPU at 5,000 QPS (BENCHMARKS.md). The poll is
        # level-triggered, so a second queued reply is read on the loop's next turn.
        if self.sock.fileno() < 0:
            return
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # ICMP port unreachable and friends on a connected socket: fail fast, every query
            # on it, and take the socket out of the pool (the next query gets a fresh one).
            self.fail_all(UpstreamError(f"network error: {exc}", "network"))
            return
        try:
            self._received(data)
        except Exception:  # the callback edge: count, log, keep reading
            _log.exception("unexpected error while handling an upstream reply")
            self.upstream.errors += 1

    def _received(self, data: bytes) -> None:
        up = self.upstream
        if len(data) < 12:
            up.failures["mismatch"] += 1
            return
        exchange = self.pending.get((data[0] << 8) | data[1])
        if exchange is None:
            up.failures["mismatch"] += 1
            return
        question = exchange.question
        try:
            info = analyze_reply(data, question)
        except WireError:
            up.failures["malformed"] += 1
            return
        # As sent (the usual case, found by analyze_reply), or the same name in other letter
        # case (RFC 4343).
        if not info.asked and info.question(data) != question:
            up.failures["mismatch"] += 1
            return
        del self.pending[info.id]
        if self.retired and not self.pending:
            self.close()
        exchange.replied(data, info)

    def fail_all(self, error: UpstreamError) -> None:
        """Fail every query waiting on this socket and retire it."""
        pending = list(self.pending.values())
        self.pending.clear()
        self.upstream.discard(self)
        self.close()
        for exchange in pending:
            exchange.failed(error)

    def forget(self, qid: int, exchange: _Exchange) -> None:
        """Drop the query `exchange` waits for, if it is still pending (timed out).

        Only that exchange's own entry: once its reply arrived, its ID is free again and may
        already belong to a newer query on this socket, which must not lose its entry."""
        if self.pending.get(qid) is exchange:
            del self.pending[qid]
        if self.retired and not self.pending:
            self.close()

    def close(self) -> None:
        self.retired = True
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.fd)
            self.sock.close()
        self.upstream._open.discard(self)


class Upstream:
    """One upstream resolver: its address, health, latency, counters and UDP sockets."""

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
        self.errors = 0  # unexpected exceptions caught while handling this upstream's replies
        self._channels: list[_Channel] = []  # the pool: sockets taking new queries
        self._open: set[_Channel] = set()  # every socket not closed yet, retired ones too
        self._turn = 0  # round-robin over the sockets once the pool is full
        # The module's policy, read once: compiled, an attribute is a C field, a module global
        # that tests may change is a dict lookup per query.
        self.pool_size = SOCKETS_PER_UPSTREAM
        self.max_uses = MAX_SOCKET_USES

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

    def channel(self, loop: asyncio.AbstractEventLoop) -> _Channel:
        """Return a socket for one more query: a new one until the pool is full, then the next
        open one. Raises OSError when a socket cannot be opened."""
        channels = self._channels
        if len(channels) < self.pool_size:
            channel = _Channel(self, loop)
            channels.append(channel)
            self._open.add(channel)
        else:
            # Which socket matters no more than its port does: an off-path spoofer sees
            # neither, so taking them in turn costs no entropy and no random draw.
            self._turn = turn = (self._turn + 1) % self.pool_size
            channel = channels[turn]
        channel.uses += 1
        if channel.uses >= self.max_uses:
            channels.remove(channel)
            channel.retired = True  # closes once its last query is done
        return channel

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
        """Close every UDP socket, retired ones with queries still pending too."""
        for channel in list(self._open):
            channel.close()
        self._channels.clear()


def order(upstreams: list[Upstream], now: float) -> list[Upstream]:
    """Return the upstreams in the order to try them: the policy, and nothing else.

    Healthy upstreams in configured order, then those marked down. A down upstream whose retry
    time has come goes first once (an in-band probe), and its retry time moves on by its
    backoff, so only one query per interval pays for probing it.
    """
    for u in upstreams:
        if not u.healthy:
            break
    else:
        return upstreams  # all healthy: the configured order, as it is
    healthy = [u for u in upstreams if u.healthy]
    down = [u for u in upstreams if not u.healthy]
    for u in down:
        if now >= u.retry_at:
            backoff = min(RETRY_MAX, RETRY_MIN * 2 ** (u.consecutive_failures - 1))
            u.retry_at = now + backoff
            down.remove(u)
            return [u, *healthy, *down]
    return healthy + down


class _Exchange:
    """One question asked of the upstreams, attempt by attempt, until an answer or the deadline.

    States: waiting on a UDP reply (`qid` >= 0), on a TCP task (`task` set), or finished
    (`done` None). Every way out of an attempt goes through :meth:`_attempt_over`."""

    __slots__ = (
        "candidates",
        "cd",
        "channel",
        "client",
        "deadline",
        "do",
        "done",
        "due",
        "index",
        "last",
        "qid",
        "question",
        "started",
        "task",
    )

    def __init__(
        self, client: UpstreamClient, question: bytes, cd: bool, do: bool, done: Done, now: float
    ) -> None:
        self.client = client
        self.question = question
        self.cd = cd
        self.do = do
        self.done: Done | None = done
        self.due = 0  # the timer bucket of the current attempt's deadline; 0: in none
        self.index = -1
        self.qid = -1
        self.channel: _Channel | None = None
        self.task: asyncio.Task[None] | None = None
        self.last: UpstreamError | None = None  # why the latest attempt failed
        self.started = now
        self.deadline = now + client.timeout
        self.candidates = order(client.upstreams, now)

    def _next(self, now: float) -> None:
        """Start the next attempt, or finish with the last error when none is left."""
        client = self.client
        candidates = self.candidates
        while True:
            self.index = index = self.index + 1
            remaining = self.deadline - now
            if index >= len(candidates) or remaining <= 0:
                self._finish(self.last or UpstreamTimeout())
                return
            upstream = candidates[index]
            # Healthy upstreams share the time left; one marked down gets a share only when
            # it is being probed, so a dead backup cannot halve a slow primary's time.
            sharing = 1
            for later in range(index + 1, len(candidates)):  # no slice: no list per query
                sharing += candidates[later].healthy
            channel = None
            try:
                channel = upstream.channel(client.loop)
                qid = _rng.id16()
                pending = channel.pending
                while qid in pending:
                    qid = _rng.id16()
                channel.sock.send(build_query(qid, self.question, cd=self.cd, do=self.do))
            except OSError as exc:  # no route, no file descriptors...: this upstream failed
                error = UpstreamError(f"network error: {exc}", "network")
                if channel is not None:
                    # The error may be an ICMP error that arrived for an earlier query on this
                    # socket (a connected socket reports it to the next call): the socket's
                    # other queries fail now too, as they would have in its reader.
                    channel.fail_all(error)
                upstream.mark_failure("network", now)
                self.last = error
                continue
            pending[qid] = self
            upstream.queries += 1
            self.channel = channel
            self.qid = qid
            self.started = now
            client.timers.add(now + remaining / sharing, self)
            return

    def _attempt_over(self) -> None:
        channel = self.channel
        if channel is not None:
            channel.forget(self.qid, self)
            self.channel = None
        self.qid = -1
        self.task = None

    def expired(self) -> None:
        """The current attempt's deadline passed (ignored when it went on over TCP: that
        exchange has its own timeout)."""
        if self.done is None or self.task is not None or self.qid < 0:
            return
        self._attempt_over()
        self._fail(UpstreamTimeout())

    def failed(self, error: UpstreamError) -> None:
        """The socket of the current attempt failed."""
        if self.done is None or self.qid < 0:
            return
        self._attempt_over()
        self._fail(error)

    def _fail(self, error: UpstreamError) -> None:
        # Kept as `last`: without its traceback, which holds the frame that raised it and so,
        # through it, this exchange (a reference cycle, left for the collector otherwise).
        error.__traceback__ = error.__context__ = None
        now = self.client.clock()
        self.candidates[self.index].mark_failure(error.reason, now)
        self.last = error
        self._next(now)

    def replied(self, data: bytes, info: ReplyInfo) -> None:
        """A matching, well-formed UDP reply arrived for the current attempt."""
        if self.done is None:
            return
        self.channel = None  # the socket already dropped our entry
        self.qid = -1
        if info.flags & FLAG_TC:  # TC=1: ask again over TCP with the time left (RFC 7766 5)
            self.client.tcp_fallbacks += 1
            self.task = asyncio.ensure_future(self._over_tcp(self.index))
            return
        self._judge(data, info)

    async def _over_tcp(self, index: int) -> None:
        upstream = self.candidates[index]
        timeout = self.deadline - self.client.clock()
        try:
            data, info = await upstream.exchange_tcp(self.question, self.cd, self.do, timeout)
        except Exception as exc:  # UpstreamError, or the task's edge for anything unexpected
            if not isinstance(exc, UpstreamError):
                _log.exception("unexpected error while asking over TCP")
                self.client.errors += 1
                exc = UpstreamError(f"unexpected error over TCP: {exc!r}", "network")
            if self.done is not None and self.index == index:
                self.task = None
                self._fail(exc)
            return
        if self.done is not None and self.index == index:
            self.task = None
            self._judge(data, info)

    def _judge(self, data: bytes, info: ReplyInfo) -> None:
        upstream = self.candidates[self.index]
        rcode = info.rcode
        if rcode > 0xF:  # an extended rcode (BADVERS, BADCOOKIE...) to our plain query
            self._fail(UpstreamError(f"{upstream.address} answered rcode {rcode}", "malformed"))
        elif rcode == SERVFAIL:
            self._fail(UpstreamError(f"{upstream.address} answered SERVFAIL", "servfail"))
        elif rcode == REFUSED:
            self._fail(UpstreamError(f"{upstream.address} answered REFUSED", "refused"))
        else:
            upstream.mark_success(self.client.clock() - self.started)
            self._finish((data, info))

    def _finish(self, answer: Answer) -> None:
        done = self.done
        if done is None:
            return
        self.done = None
        client = self.client
        client.active -= 1
        if self.due:
            client.timers.remove(self)
        done(answer)

    def abandon(self, error: UpstreamError) -> None:
        """End now with `error` (the client is closing)."""
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self._finish(error)


class _Timers:
    """Attempt deadlines in buckets of TIMER_SLACK seconds, with one loop timer armed for the
    earliest bucket.

    An exchange sits in the bucket of its current attempt's deadline and leaves it when it
    finishes or starts its next attempt: a set discard. So a finished query's objects are
    freed when it finishes, a few at a time, never thousands at once (a heap that kept dead
    entries until a sweep freed 4,096 exchanges in one go: a 1.5-7.6 ms stall every 4,096
    queries, BENCHMARKS.md). A bucket's deadline is the end of its slot: a timeout fires up to
    TIMER_SLACK late, which costs nothing, while a loop timer per query would cost as much as
    the query."""

    def __init__(self, client: UpstreamClient) -> None:
        self.client = client
        self.buckets: dict[int, set[_Exchange]] = {}
        self.order: list[int] = []  # heap of the buckets' numbers
        self.handle: asyncio.TimerHandle | None = None
        self.armed = _NEVER  # the bucket the loop timer is armed for
        # The bucket most recently added to: queries close in time share one, so most adds
        # and removes find it here without a dict lookup.
        self.last_due = 0
        self.last: set[_Exchange] = set()

    def add(self, when: float, exchange: _Exchange) -> None:
        """Put `exchange` in the bucket of `when` (out of the one it was in, if any)."""
        if exchange.due:
            self.remove(exchange)
        due = int(when * _BUCKETS_PER_SECOND) + 1  # the slot's end: never before `when`
        if due == self.last_due:
            bucket = self.last
        else:
            found = self.buckets.get(due)
            if found is None:
                found = self.buckets[due] = set()
                heapq.heappush(self.order, due)
                if due < self.armed:
                    self._arm(due)
            bucket = found
            self.last_due = due
            self.last = bucket
        bucket.add(exchange)
        exchange.due = due

    def remove(self, exchange: _Exchange) -> None:
        if exchange.due == self.last_due:
            self.last.discard(exchange)
        else:
            bucket = self.buckets.get(exchange.due)
            if bucket is not None:
                bucket.discard(exchange)
        exchange.due = 0

    def _arm(self, due: int) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.armed = due
        delay = max(0.0, due / _BUCKETS_PER_SECOND - self.client.clock())
        self.handle = self.client.loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self.handle = None
        self.armed = _NEVER
        order = self.order
        buckets = self.buckets
        # The loop's timers run up to 1 ms early.
        now = int((self.client.clock() + 0.001) * _BUCKETS_PER_SECOND)
        due: list[set[_Exchange]] = []
        while order and order[0] <= now:
            due.append(buckets.pop(heapq.heappop(order)))
        if self.last_due <= now:  # taken out above
            self.last_due = 0
            self.last = set()
        for bucket in due:  # taken out first: an expiry's next attempt goes to a new bucket
            for exchange in bucket:
                exchange.due = 0
            for exchange in bucket:
                try:
                    exchange.expired()
                except Exception:  # the callback edge: one exchange's bug must not stop the rest
                    _log.exception("unexpected error while expiring an upstream query")
                    self.client.errors += 1
        if order:
            self._arm(order[0])

    def __len__(self) -> int:
        """Exchanges waiting on a deadline."""
        return sum(len(bucket) for bucket in self.buckets.values())

    def close(self) -> None:
        """End every exchange still going with an error (each waiting attempt is in a bucket)."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.armed = _NEVER
        buckets, self.buckets, self.order = self.buckets, {}, []
        self.last_due = 0
        self.last = set()
        error = UpstreamError("the upstream client was closed", "network")
        for bucket in buckets.values():
            for exchange in bucket:
                exchange.due = 0
                exchange.abandon(error)


class UpstreamClient:
    """Asks a question of the upstreams with failover, within one overall timeout."""

    def __init__(
        self,
        upstreams: Sequence[Upstream],
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.clock = clock
        self.tcp_fallbacks = 0
        self.errors = 0  # unexpected exceptions caught at this layer's callback edges
        self.active = 0  # exchanges not finished yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self.timers = _Timers(self)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def close(self) -> None:
        """Close every upstream's sockets; queries still in flight end with an UpstreamError."""
        self.timers.close()
        for upstream in self.upstreams:
            upstream.close()

    def ask(self, question: bytes, cd: bool, do: bool, done: Done) -> None:
        """Ask `question` (QNAME wire bytes + QTYPE + QCLASS); call `done` once, later or
        now, with (reply bytes with OPT still in, its info) or the UpstreamError that ended it.

        Upstreams are tried in :func:`order`; one that times out, errors, or answers
        SERVFAIL/REFUSED is marked down and the next is tried, all within `timeout`.
        """
        self.active += 1
        now = self.clock()
        _Exchange(self, question, cd, do, done, now)._next(now)

    async def query(
        self, question: bytes, cd: bool = False, do: bool = False
    ) -> tuple[bytes, ReplyInfo]:
        """:meth:`ask` for a coroutine: return the reply and info, or raise the UpstreamError."""
        future: asyncio.Future[Answer] = self.loop.create_future()

        def done(answer: Answer) -> None:
            if not future.done():
                future.set_result(answer)

        self.ask(question, cd, do, done)
        answer = await future
        if isinstance(answer, UpstreamError):
            raise answer
        return answer
