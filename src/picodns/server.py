"""Server: UDP and TCP listeners. Moves bytes; the handler decides what they mean.

Rules kept here:
- The datagram callback reads the clock once, tries the handler's synchronous cache lookup and
  answers a hit right there; a miss goes to the bounded pool. It never awaits or blocks.
- UDP messages over MAX_UDP_SIZE are dropped and counted. TCP uses 2-byte length framing
  (RFC 7766 8), so a message over 65535 cannot exist; pipelined queries are answered as they
  complete; idle connections are closed; each listener holds at most `max_connections`.
- `serve` takes already-bound sockets and a shutdown trigger, so tests run it in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

from picodns.pool import Pool

__all__ = [
    "MAX_TCP_PIPELINE",
    "Handler",
    "Listener",
    "QueryLog",
    "Server",
    "ServerStats",
    "bind",
]

MAX_UDP_IN: Final = 4096  # RFC 6891 6.2.5: larger UDP queries are dropped (== wire.MAX_UDP_SIZE)
MAX_TCP_PIPELINE: Final = 64  # queries in flight per TCP connection before we stop reading from it
MAX_TCP_OUT: Final = 65535  # RFC 7766 8: the 2-byte length prefix
TCP_WRITE_BUFFER: Final = 256 * 1024  # replies a client has not read yet before we stop reading it
RCVBUF: Final = 4 * 1024 * 1024  # absorbs bursts while the loop is busy
_log = logging.getLogger("picodns.server")

# transport, client, query, reply (None: dropped), "cache" or "resolved", seconds taken
QueryLog = Callable[[str, Any, bytes, "bytes | None", str, float], None]


class Handler(Protocol):
    """The narrow interface the server calls (the resolver provides it)."""

    def lookup(self, query: bytes, now: float, tcp: bool = False) -> bytes | None: ...

    def start(self, query: bytes, tcp: bool, done: Callable[[bytes | None], None]) -> None: ...

    def servfail(self, query: bytes) -> bytes | None: ...


@dataclass
class ServerStats:
    """Counters of the listeners, read by metrics."""

    udp_queries: int = 0
    tcp_queries: int = 0
    udp_oversize: int = 0
    tcp_open: int = 0
    tcp_refused: int = 0
    tcp_idle_closed: int = 0


@dataclass
class Listener:
    """One listen address: a bound UDP socket and a bound, not yet listening, TCP socket."""

    udp: socket.socket
    tcp: socket.socket

    @property
    def address(self) -> str:
        host, port = self.udp.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(host: str, port: int, reuse_port: bool = False) -> Listener:
    """Bind UDP and TCP on (host, port); "" means every address (dual-stack when possible).

    With port 0 the kernel picks one port free for both. Raises OSError when binding fails.
    """
    if host == "":
        try:
            return _bind("::", port, reuse_port, dual_stack=True)
        except OSError:
            return _bind("0.0.0.0", port, reuse_port, dual_stack=False)
    return _bind(host, port, reuse_port, dual_stack=False)


def _bind(host: str, port: int, reuse_port: bool, dual_stack: bool) -> Listener:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(1 if port else 20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            for sock in (udp, tcp):
                if dual_stack:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _set_rcvbuf(udp)
            udp.bind((host, port))
            tcp.bind((host, udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
            continue
        udp.setblocking(False)
        tcp.setblocking(False)
        return Listener(udp, tcp)
    raise OSError(f"no port free for both UDP and TCP on {host}")


def _set_rcvbuf(sock: socket.socket) -> None:
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, force, RCVBUF)
            return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        # Bound once: the hot path below reads locals, not attribute chains.
        self.stats = server.stats
        self.clock = server.clock
        self.lookup = server.handler.lookup

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # The hot path: one clock read, one lookup, one send. Nothing else on a hit.
        self.stats.udp_queries += 1
        if len(data) > MAX_UDP_IN:
            self.stats.udp_oversize += 1
            return
        now = self.clock()
        reply = self.lookup(data, now)
        server = self.server
        if reply is not None:
            self.transport.sendto(reply, addr)  # type: ignore[union-attr]
            if server.query_log is not None:
                server.query_log("udp", addr, data, reply, "cache", server.clock() - now)
            return
        if server.accepting:
            server.pool.submit(_Job(server, data, self.transport, None, addr, now), now)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors about clients that went away: nothing to do


class _Tcp(asyncio.Protocol):
    """One client TCP connection. Reading pauses while too many of its queries are in flight
    or while the client is not reading its replies (the write buffer is over its high mark)."""

    def __init__(self, server: Server, listener: _TcpListener) -> None:
        self.server = server
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.in_flight = 0
        self.pipeline_full = False
        self.write_blocked = False
        self.idle: asyncio.TimerHandle | None = None
        self.peer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        listener = self.listener
        if listener.open >= self.server.max_connections or not self.server.accepting:
            self.server.stats.tcp_refused += 1
            self.transport.abort()
            self.transport = None
            return
        listener.open += 1
        listener.connections.add(self)
        self.server.stats.tcp_open += 1
        self.transport.set_write_buffer_limits(high=TCP_WRITE_BUFFER)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        if self not in self.listener.connections:
            return  # refused at the cap: never counted as open
        self.listener.open -= 1
        self.listener.connections.discard(self)
        self.server.stats.tcp_open -= 1
        if self.idle is not None:
            self.idle.cancel()
        self.transport = None

    def pause_writing(self) -> None:
        self.write_blocked = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_blocked = False
        self._update_reading()
        if self.buffer and not self.pipeline_full:
            self.data_received(b"")  # frames that arrived while the client was not reading

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.write_blocked or self.pipeline_full:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(self.server.idle_timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        if self.in_flight:
            self._arm_idle()  # still answering: not idle
            return
        if self.transport is not None:
            self.server.stats.tcp_idle_closed += 1
            self.transport.close()  # also drops a half-written frame

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        server = self.server
        pos = 0
        end = len(buf)
        while end - pos >= 2 and not self.write_blocked and self.in_flight < MAX_TCP_PIPELINE:
            size = (buf[pos] << 8) | buf[pos + 1]
            if size == 0:
                self._abort()
                return
            if end - pos - 2 < size:
                break
            query = bytes(buf[pos + 2 : pos + 2 + size])
            pos += 2 + size
            server.stats.tcp_queries += 1
            now = server.clock()
            reply = server.handler.lookup(query, now, True)
            if reply is not None:
                self.send(reply)
                if server.query_log is not None:
                    server.query_log("tcp", self.peer, query, reply, "cache", server.clock() - now)
            elif server.accepting:
                self.in_flight += 1
                if not server.pool.submit(_Job(server, query, None, self, self.peer, now), now):
                    self.in_flight -= 1
        if pos:
            del buf[:pos]
            self._arm_idle()  # only a complete query counts as activity: no trickling forever
        self.pipeline_full = self.in_flight >= MAX_TCP_PIPELINE
        self._update_reading()

    def send(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if len(reply) > MAX_TCP_OUT:
                self.transport.abort()  # cannot be framed; never happens with our replies
                return
            self.transport.write(len(reply).to_bytes(2, "big") + reply)

    def _done(self, reply: bytes) -> None:
        """A miss has finished (reply b"": nothing to send); called once per submitted query."""
        self.in_flight -= 1
        if reply:
            self.send(reply)
        if self.pipeline_full and self.in_flight < MAX_TCP_PIPELINE:
            self.pipeline_full = False
            self._update_reading()
            if self.buffer and self.transport is not None:
                self.data_received(b"")  # frames that arrived while paused

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


@dataclass
class _TcpListener:
    open: int = 0
    connections: set[_Tcp] = field(default_factory=set)


class _Job:
    """One miss: the query, where its reply goes, and the guard that it is answered once."""

    __slots__ = ("conn", "finished", "peer", "query", "received", "server", "started", "udp")

    def __init__(
        self, server: Server, query: bytes, udp: asyncio.DatagramTransport | None,
        conn: _Tcp | None, peer: Any, received: float,
    ) -> None:  # fmt: skip
        self.server = server
        self.query = query
        self.udp = udp  # the UDP transport it came in on, or
        self.conn = conn  # its TCP connection
        self.peer = peer
        self.received = received
        self.started = False
        self.finished = False

    def finish(self, reply: bytes | None) -> None:
        """Send `reply` (None: nothing may be sent), free the pool slot and the TCP pipeline
        slot, log. Only the first call counts."""
        if self.finished:
            return
        self.finished = True
        server = self.server
        try:
            if self.conn is not None:
                self.conn._done(reply or b"")
            elif reply and self.udp is not None and not self.udp.is_closing():
                self.udp.sendto(reply, self.peer)
        finally:
            if self.started:
                server.pool.release()
        if self.started and server.query_log is not None:
            transport = "udp" if self.conn is None else "tcp"
            latency = server.clock() - self.received
            server.query_log(transport, self.peer, self.query, reply, "resolved", latency)


def _release(job: _Job) -> None:
    """A queued miss was dropped unanswered: a TCP connection gets its pipeline slot back."""
    job.finish(None)


class Server:
    """Serves a handler on bound listeners, with a pool for the misses."""

    def __init__(
        self,
        handler: Handler,
        *,
        workers: int,
        queue_size: int,
        max_wait: float,
        idle_timeout: float = 10.0,
        max_connections: int = 256,
        clock: Callable[[], float] = time.monotonic,
        query_log: QueryLog | None = None,
    ) -> None:
        self.handler = handler
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.stats = ServerStats()
        self.query_log = query_log
        self.pool: Pool[_Job] = Pool(
            self._start, workers, queue_size, max_wait, clock, on_error=self._fail, on_drop=_release
        )
        self.accepting = False
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.Server] = []
        self._tcp_listeners: list[_TcpListener] = []

    def _start(self, job: _Job) -> None:
        job.started = True
        self.handler.start(job.query, job.conn is not None, job.finish)

    def _fail(self, job: _Job) -> None:
        job.finish(self.handler.servfail(job.query))

    async def start(self, listeners: list[Listener]) -> None:
        """Start serving on `listeners` (sockets already bound)."""
        loop = asyncio.get_running_loop()
        self.pool.start()
        self.accepting = True
        for listener in listeners:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), sock=listener.udp
            )
            self._udp.append(transport)
            state = _TcpListener()
            self._tcp_listeners.append(state)
            server = await loop.create_server(
                lambda state=state: _Tcp(self, state),  # type: ignore[misc]
                sock=listener.tcp,
                backlog=1024,
            )
            self._tcp.append(server)

    async def stop(self, grace: float) -> None:
        """Stop accepting, let in-flight queries finish for up to `grace` s, then close all."""
        self.accepting = False
        for server in self._tcp:
            server.close()
        await self.pool.drain(grace)
        for transport in self._udp:
            transport.close()
        for state in self._tcp_listeners:
            for conn in list(state.connections):
                if conn.transport is not None:
                    conn.transport.close()
        for server in self._tcp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def serve(
        self, listeners: list[Listener], shutdown: Awaitable[Any], grace: float = 2.0
    ) -> None:
        """Serve until `shutdown` completes, then stop gracefully."""
        await self.start(listeners)
        try:
            await shutdown
        finally:
            await self.stop(grace)
