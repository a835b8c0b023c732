"""The upstream client's socket policy and its timer heap, over real loopback sockets.

RFC 5452: each upstream query leaves from one of a few connected sockets on kernel-chosen
ports, and every socket is replaced after MAX_SOCKET_USES queries, so the set of source ports
keeps moving. The client keeps no more sockets, and no more timer entries, than it needs.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from picodns.upstream import MAX_SOCKET_USES, SOCKETS_PER_UPSTREAM
from tests.support.fake_upstream import FakeUpstream, answer
from tests.support.resolving import make_resolver, run

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


def test_timer_entries_of_answered_queries_are_swept_out() -> None:
    # Answered queries leave their deadline in the heap (removing it would cost more than the
    # query); once dead entries are most of a big heap, they are swept, so it stays bounded.
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up, timeout=30.0)
            client = resolver.client
            largest = 0
            for i in range(5000):
                await client.query(b"\x05" + f"q{i:04d}".encode() + QUESTION[2:])
                largest = max(largest, len(client.timers.heap))
            assert client.active == 0
            assert largest <= 4096
            client.close()
            assert not client.timers.heap

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
