"""The upstream client's socket policy and its timer heap, over real loopback sockets.

RFC 5452: each upstream query leaves from one of a few connected sockets on kernel-chosen
ports, and every socket is replaced after MAX_SOCKET_USES queries, so the set of source ports
keeps moving. The client keeps no more sockets, and no more timer entries, than it needs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter

import dns.flags
import dns.message
import dns.rcode
import pytest

from picodns import upstream as upstream_module
from picodns.errors import UpstreamError
from picodns.upstream import MAX_SOCKET_USES, SOCKETS_PER_UPSTREAM, Upstream, UpstreamClient
from tests.support.build import patches_methods
from tests.support.fake_upstream import FakeUpstream, answer, reply_with
from tests.support.resolving import ask, make_resolver, run

QUESTION = b"\x01a\x07example\x00\x00\x01\x00\x01"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_source_ports_rotate_and_retired_sockets_close() -> None:
    rounds = 3 * SOCKETS_PER_UPSTREAM * MAX_SOCKET_USES // 2

    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up)
            client = resolver.client
            before = _open_fds()
            for _ in range(rounds):
                data, _info = await client.query(QUESTION)
                assert data[12 : 12 + len(QUESTION)] == QUESTION
            ports = Counter(r.source[1] for r in up.received)
            assert sum(ports.values()) == rounds
            # Every socket was retired after its quota and replaced by one on a new port.
            assert max(ports.values()) <= MAX_SOCKET_USES
            assert len(ports) >= rounds // MAX_SOCKET_USES
            # Only the live pool stays open: retired sockets were closed once answered.
            upstream = client.upstreams[0]
            assert len(upstream._channels) <= SOCKETS_PER_UPSTREAM
            assert _open_fds() - before <= SOCKETS_PER_UPSTREAM
            client.close()
            assert _open_fds() <= before

    run(main())


def test_an_answered_query_leaves_the_timers_at_once() -> None:
    # A finished exchange is dropped by the timers when it finishes, not kept until its
    # deadline or a sweep: what a query allocated is freed a query at a time.
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up, timeout=30.0)
            client = resolver.client
            waiting = []
            for i in range(300):
                await client.query(b"\x05" + f"q{i:04d}".encode() + QUESTION[2:])
                waiting.append(len(client.timers))
            assert client.active == 0
            assert waiting == [0] * 300
            client.close()
            assert not client.timers.buckets

    run(main())


def test_concurrent_questions_each_get_their_own_answer() -> None:
    # Many exchanges in flight on the same few sockets: every reply reaches the right one.
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up)
            client = resolver.client
            names = [b"\x05" + f"c{i:04d}".encode() + QUESTION[2:] for i in range(150)]
            replies = await asyncio.gather(*(client.query(q) for q in names))
            for question, (data, _info) in zip(names, replies, strict=True):
                assert data[12 : 12 + len(question)] == question
            assert client.active == 0
            client.close()

    run(main())


def _closed_port() -> int:
    """A loopback UDP port nothing listens on (the kernel answers ICMP port unreachable)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def test_closing_the_client_ends_queries_in_flight_and_closes_every_socket() -> None:
    async def main() -> None:
        async with FakeUpstream(lambda q, t: None) as silent:  # never answers
            resolver = make_resolver(silent, timeout=30.0)
            client = resolver.client
            before = _open_fds()
            # Enough queries that some sockets are retired with queries still pending on them.
            waiting = [
                asyncio.ensure_future(client.query(b"\x05" + f"w{i:04d}".encode() + QUESTION[2:]))
                for i in range(SOCKETS_PER_UPSTREAM * MAX_SOCKET_USES + 20)
            ]
            await asyncio.sleep(0.05)
            assert client.active == len(waiting)
            assert len(client.timers) == len(waiting)  # each waits on its deadline
            client.close()
            for ending in await asyncio.gather(*waiting, return_exceptions=True):
                assert isinstance(ending, UpstreamError) and "closed" in str(ending)
            assert client.active == 0 and not client.timers.buckets
            assert _open_fds() <= before

    run(main())


def test_an_error_reported_by_send_fails_the_other_queries_on_that_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A connected UDP socket reports an ICMP error to its next call: here the second query's
    # send, made before the loop ran the socket's reader. The first query on that socket must
    # fail over at once too, not sit out its timeout.
    monkeypatch.setattr(upstream_module, "SOCKETS_PER_UPSTREAM", 1)

    async def main() -> None:
        async with FakeUpstream(answer()) as good:
            client = UpstreamClient(
                [Upstream("127.0.0.1", _closed_port()), Upstream(*good.address)], timeout=4.0
            )
            answers: list[object] = []
            client.ask(QUESTION, False, False, answers.append)
            time.sleep(0.05)  # the ICMP error arrives while the loop is busy
            client.ask(b"\x01b" + QUESTION[2:], False, False, answers.append)
            async with asyncio.timeout(10):
                while len(answers) < 2:
                    await asyncio.sleep(0.01)
            assert all(isinstance(a, tuple) for a in answers)  # both answered by the good one
            dead = client.upstreams[0]
            assert dead.failures["network"] == 2 and dead.failures["timeout"] == 0
            client.close()

    run(main())


@patches_methods
def test_an_unexpected_error_over_tcp_ends_the_query_and_frees_its_question(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def truncated(query: dns.message.Message, transport: str) -> object:
        reply = reply_with(query)
        reply.flags |= dns.flags.TC
        return reply

    async def main() -> None:
        async with FakeUpstream(truncated) as up:
            resolver = make_resolver(up, timeout=1.0)

            async def broken(*args: object) -> object:
                raise RuntimeError("injected fault")

            monkeypatch.setattr(resolver.client.upstreams[0], "exchange_tcp", broken)
            for _ in range(2):  # the second must not wait on the first's dead fetch
                reply = await ask(resolver, "tc.example.")
                assert reply.rcode() == dns.rcode.SERVFAIL
            assert resolver.client.errors == 2 and resolver.client.active == 0
            assert not resolver._inflight
            resolver.client.close()

    run(main())
