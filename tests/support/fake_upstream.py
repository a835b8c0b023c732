"""A programmable fake upstream for tests: UDP and TCP on one loopback port-0 address.

Its handler gets each received query (parsed by dnspython, the oracle) and the transport, and
returns what to do: a dnspython message (sent with the query's ID unless it has a non-zero ID of
its own), raw bytes (sent as they are), None (drop), :class:`Delay` around one of those, or a
list of actions done in order. Every query received is recorded, so tests
assert what the upstream saw as well as what the client got.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import dns.message
import dns.rcode
import dns.rrset

__all__ = ["Delay", "FakeUpstream", "Received", "answer", "nxdomain", "reply_with"]


@dataclass
class Delay:
    """Wait `seconds`, then do `then`."""

    seconds: float
    then: Any


@dataclass
class Received:
    transport: str
    message: dns.message.Message | None
    raw: bytes
    source: tuple[Any, ...]


Handler = Callable[[dns.message.Message, str], Any]


def reply_with(query: dns.message.Message, *rrs: str, rcode: int = 0) -> dns.message.Message:
    """A response to `query` with the given records ("name ttl IN TYPE rdata", answer section)."""
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    for text in rrs:
        name, ttl, rdclass, rdtype, rdata = text.split(None, 4)
        response.answer.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata))
    return response


def answer(ttl: int = 300, address: str = "192.0.2.1") -> Handler:
    """Handler answering every question with one A record."""

    def handle(query: dns.message.Message, transport: str) -> dns.message.Message:
        name = query.question[0].name.to_text()
        return reply_with(query, f"{name} {ttl} IN A {address}")

    return handle


def nxdomain(soa_ttl: int = 3600, minimum: int = 300, rcode: int = dns.rcode.NXDOMAIN) -> Handler:
    """Handler answering NXDOMAIN (or NODATA with rcode=0) with an SOA in the authority."""

    def handle(query: dns.message.Message, transport: str) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        soa = f"ns.example. host.example. 1 7200 900 1209600 {minimum}"
        response.authority.append(dns.rrset.from_text("example.", soa_ttl, "IN", "SOA", soa))
        return response

    return handle


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, fake: FakeUpstream) -> None:
        self.fake = fake
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        task = asyncio.ensure_future(self.fake._handle(data, "udp", addr, self._send(addr)))
        self.fake._tasks.add(task)
        task.add_done_callback(self.fake._tasks.discard)

    def _send(self, addr: tuple[Any, ...]) -> Callable[[bytes], None]:
        def send(data: bytes) -> None:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(data, addr)

        return send


@dataclass
class FakeUpstream:
    """UDP+TCP fake upstream on 127.0.0.1 (or `host`), port chosen by the kernel."""

    handler: Handler = field(default_factory=answer)
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _udp: Any = None
    _tcp: Any = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def queries(self, transport: str | None = None) -> list[dns.message.Message]:
        """Parsed queries received, optionally of one transport."""
        return [
            r.message
            for r in self.received
            if r.message is not None and (transport is None or r.transport == transport)
        ]

    async def start(self) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(20):  # UDP and TCP must share a port number
            udp_sock = socket.socket(family, socket.SOCK_DGRAM)
            udp_sock.bind((self.host, 0))
            port = udp_sock.getsockname()[1]
            tcp_sock = socket.socket(family, socket.SOCK_STREAM)
            tcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp_sock.bind((self.host, port))
            except OSError:
                udp_sock.close()
                tcp_sock.close()
                continue
            break
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self.port = port
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp_sock)
        self._tcp = await asyncio.start_server(self._tcp_client, sock=tcp_sock)
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")

        def send(data: bytes) -> None:
            writer.write(len(data).to_bytes(2, "big") + data)

        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
                await self._handle(data, "tcp", addr, send)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _handle(
        self, data: bytes, transport: str, addr: tuple[Any, ...], send: Callable[[bytes], None]
    ) -> None:
        try:
            query: dns.message.Message | None = dns.message.from_wire(data)
        except Exception:
            query = None
        self.received.append(Received(transport, query, data, addr))
        if query is None:
            return
        action = self.handler(query, transport)
        await self._do(action, query, send)

    async def _do(
        self, action: Any, query: dns.message.Message, send: Callable[[bytes], None]
    ) -> None:
        if isinstance(action, list):
            for item in action:
                await self._do(item, query, send)
            return
        if isinstance(action, Delay):
            await asyncio.sleep(action.seconds)
            await self._do(action.then, query, send)
            return
        if action is None:
            return
        if isinstance(action, dns.message.Message):
            if action.id == 0:
                action.id = query.id
            send(action.to_wire(max_size=65535))
        else:
            send(bytes(action))
