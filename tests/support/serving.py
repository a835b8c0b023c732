"""Run PicoDNS in-process on loopback port-0 listeners, for end-to-end tests."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import dns.message

from picodns.cli import serve
from picodns.config import Config
from picodns.resolver import Resolver
from picodns.server import Server, bind
from tests.support.fake_upstream import FakeUpstream


@dataclass
class Running:
    server: Server
    resolver: Resolver
    host: str
    port: int
    metrics: tuple[str, int] | None = None

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


@asynccontextmanager
async def running(
    *fakes: FakeUpstream, listen: str = "127.0.0.1", **overrides: Any
) -> AsyncIterator[Running]:
    """Serve in this event loop in front of `fakes` (cli.serve, as the command does); stop
    gracefully on exit."""
    config = dataclasses.replace(
        Config(),
        listen=((listen, 0),),
        upstreams=tuple(f.address for f in fakes),
        **overrides,
    )
    listener = bind(listen, 0)
    host, port = listener.udp.getsockname()[:2]
    started: asyncio.Future[Running] = asyncio.get_running_loop().create_future()

    def ready(server: Server, resolver: Resolver, metrics: tuple[str, int] | None) -> None:
        started.set_result(Running(server, resolver, host, port, metrics))

    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(config, [listener], stop.wait(), ready=ready))
    done, _ = await asyncio.wait([started, task], return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises what went wrong
    try:
        yield started.result()
    finally:
        stop.set()
        await task


async def udp_exchange(run: Running, wire: bytes, timeout: float = 2.0) -> bytes | None:
    """Send raw bytes over UDP; return the reply bytes, or None when nothing came back."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(run.family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (run.host, run.port))
        await loop.sock_sendall(sock, wire)
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)
        except TimeoutError:
            return None
    finally:
        sock.close()


async def udp_ask(run: Running, query: dns.message.Message) -> dns.message.Message:
    out = await udp_exchange(run, query.to_wire())
    assert out is not None, "no reply"
    reply = dns.message.from_wire(out)
    assert reply.id == query.id
    return reply


async def tcp_ask(run: Running, query: dns.message.Message) -> dns.message.Message:
    reader, writer = await asyncio.open_connection(run.host, run.port)
    try:
        wire = query.to_wire()
        writer.write(len(wire).to_bytes(2, "big") + wire)
        size = int.from_bytes(await reader.readexactly(2), "big")
        reply = dns.message.from_wire(await reader.readexactly(size))
    finally:
        writer.close()
    assert reply.id == query.id
    return reply


async def udp_burst(run: Running, names: list[str], wait: float) -> int:
    """Send an A query for each name from one socket, back to back; return how many replies
    came within `wait` seconds (the caller judges the rest as dropped)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(run.family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    answered = 0
    try:
        await loop.sock_connect(sock, (run.host, run.port))
        for name in names:
            await loop.sock_sendall(sock, dns.message.make_query(name, "A").to_wire())
        async with asyncio.timeout(wait):
            while True:
                await loop.sock_recv(sock, 4096)
                answered += 1
    except TimeoutError:
        pass
    finally:
        sock.close()
    return answered
