"""Regressions from the review: bounded TCP write buffers, released pipeline slots, failover on
socket errors, extended rcodes from upstream."""

from __future__ import annotations

import asyncio
import errno
import socket

import dns.message
import dns.rcode
import pytest

from picodns.server import MAX_TCP_PIPELINE, TCP_WRITE_BUFFER
from tests.support.build import patches_methods
from tests.support.fake_upstream import Delay, FakeUpstream, answer, reply_with
from tests.support.resolving import ask, make_resolver, run
from tests.support.serving import running, tcp_ask, udp_ask

BIG = " ".join(['"' + "w" * 250 + '"'] * 8)  # ~2 KB


def _big(query: dns.message.Message, transport: str) -> dns.message.Message:
    return reply_with(query, f"{query.question[0].name} 300 IN TXT {BIG}")


def test_tcp_client_that_never_reads_cannot_grow_our_write_buffer() -> None:
    async def main() -> None:
        async with FakeUpstream(_big) as up, running(up) as srv:
            query = dns.message.make_query("big.example.", "TXT")
            await tcp_ask(srv, query)  # now cached
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (srv.host, srv.port))
            wire = query.to_wire()
            frame = len(wire).to_bytes(2, "big") + wire
            try:
                async with asyncio.timeout(2):
                    for _ in range(200):
                        await loop.sock_sendall(sock, frame * 50)  # never read the replies
            except TimeoutError:
                pass  # our send buffer filled up: the server stopped reading from us
            await asyncio.sleep(0.2)
            (conn,) = srv.server._tcp_listeners[0].connections
            assert conn.transport is not None
            assert conn.transport.get_write_buffer_size() <= TCP_WRITE_BUFFER + 4096
            sock.close()

    run(main())


def test_expired_tcp_misses_release_the_connection() -> None:
    async def main() -> None:
        async with (
            FakeUpstream(lambda q, t: None) as dead,
            running(dead, workers=1, timeout=0.5, tcp_idle_timeout=0.5) as srv,
        ):
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            for i in range(4):
                wire = dns.message.make_query(f"x{i}.example.", "A").to_wire()
                writer.write(len(wire).to_bytes(2, "big") + wire)
            async with asyncio.timeout(10):
                while await reader.read(65535):
                    pass  # SERVFAILs, then the server closes the idle connection
            assert srv.server.pool.dropped_expired >= 1
            assert not srv.server._tcp_listeners[0].connections
            writer.close()

    run(main())


@patches_methods
def test_socket_error_towards_an_upstream_fails_over(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with FakeUpstream(answer()) as first, FakeUpstream(answer()) as second:
            resolver = make_resolver(first, second)

            def no_route(loop: object) -> object:
                raise OSError(errno.ENETUNREACH, "Network is unreachable")

            monkeypatch.setattr(resolver.client.upstreams[0], "channel", no_route)
            reply = await ask(resolver, "route.example.")
            assert reply.answer[0][0].address == "192.0.2.1"
            assert len(second.received) == 1
            assert not resolver.client.upstreams[0].healthy
            assert resolver.client.upstreams[0].failures["network"] == 1
            resolver.client.close()

    run(main())


def test_extended_rcode_from_upstream_is_a_failure_not_an_answer() -> None:
    def badvers(query: dns.message.Message, transport: str) -> dns.message.Message:
        reply = reply_with(query, rcode=dns.rcode.BADVERS)
        reply.use_edns(0)
        reply.set_rcode(dns.rcode.BADVERS)
        return reply

    async def main() -> None:
        async with FakeUpstream(badvers) as up, running(up, timeout=0.5) as srv:
            for _ in range(2):
                reply = await udp_ask(srv, dns.message.make_query("ext.example.", "A"))
                assert reply.rcode() == dns.rcode.SERVFAIL
            assert len(up.received) == 2  # not cached
            upstream = srv.resolver.client.upstreams[0]
            assert upstream.failures["malformed"] == 2

    run(main())


def test_tcp_pipeline_holds_at_most_64_misses_and_answers_the_rest_later() -> None:
    def slow(query: dns.message.Message, transport: str) -> object:
        return Delay(0.3, answer()(query, transport))

    async def main() -> None:
        async with FakeUpstream(slow) as up, running(up, queue_size=1000) as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            queries = [dns.message.make_query(f"p{i}.example.", "A") for i in range(100)]
            for i, query in enumerate(queries):
                query.id = 1000 + i  # distinct: 100 random IDs collide 7% of the time
            writer.write(
                b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries))
            )
            await asyncio.sleep(0.15)
            (conn,) = srv.server._tcp_listeners[0].connections
            assert conn.in_flight == MAX_TCP_PIPELINE  # one read held 100; only 64 were taken
            got = set()
            try:
                async with asyncio.timeout(10):
                    while len(got) < len(queries):
                        size = int.from_bytes(await reader.readexactly(2), "big")
                        got.add(dns.message.from_wire(await reader.readexactly(size)).id)
            except TimeoutError:
                # Say where the unanswered ones are, should this ever happen.
                pool, client = srv.server.pool, srv.resolver.client
                state = (
                    f"{len(got)} answered; connection in flight {conn.in_flight}, buffered "
                    f"{len(conn.buffer)} bytes, pipeline full {conn.pipeline_full}; pool busy "
                    f"{pool.busy} queued {pool.depth}; exchanges {client.active}; questions "
                    f"in flight {len(srv.resolver._inflight)}; upstream got {len(up.received)}"
                )
                raise AssertionError(state) from None
            assert got == {q.id for q in queries}
            writer.close()

    run(main())
