"""Many concurrent queries through the resolver against three misbehaving fake upstreams.

The invariants, for every one of ~1500 queries gathered at once: a reply comes back, with the
client's own ID and its own spelling of the question (byte for byte, RFC 4343), and it is either
the right answer or SERVFAIL; nothing raises, nothing is left in flight, and repeated questions
reach the upstreams a handful of times, not once per client (coalescing and the cache at work).

The upstreams are tried in the configured order: a lossy one (drops ~30%), then one that answers
SERVFAIL for some names, then a slow but reliable one, so failover is exercised on every path.
Randomness is seeded; timing still varies, so assertions are invariants, never exact counts.

Two smaller tests stress the upstream socket pool: a burst of misses, and query after query to
a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import random
import socket
import sys
import time
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rrset

from picodns.resolver import Resolver
from picodns.upstream import SOCKETS_PER_UPSTREAM
from tests.support.fake_upstream import Delay, FakeUpstream, reply_with
from tests.support.resolving import ask_wire, make_resolver, run

SEED = 20240531
DISTINCT = 500  # names asked once
HOT = 20  # names asked over and over
HOT_REPEATS = 50
# asyncio debug mode (make test-race) makes every task and callback several times slower; the
# same traffic then needs more time, not a weaker check.
SLOW = 5.0 if (sys.flags.dev_mode or os.environ.get("PYTHONASYNCIODEBUG")) else 1.0
TIMEOUT = 1.0 * SLOW
SPREAD = 0.5 * SLOW  # seconds over which the clients' queries arrive


def _digest(name: str) -> bytes:
    return hashlib.sha256(name.lower().rstrip(".").encode()).digest()


def address_for(name: str) -> str:
    """The A record every honest upstream gives `name`: a hash of the folded name."""
    digest = _digest(name)
    return f"10.{digest[0]}.{digest[1]}.{digest[2]}"


def fails_on(name: str) -> bool:
    """The names the SERVFAIL upstream will not answer (about one in three)."""
    return _digest(name)[3] % 3 == 0


def _answer(query: dns.message.Message) -> dns.message.Message:
    name = query.question[0].name
    rdata = dns.rdtypes.IN.A.A(dns.rdataclass.IN, dns.rdatatype.A, address_for(name.to_text()))
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_rdata(name, 300, rdata))
    return response


def lossy(rng: random.Random) -> Any:
    def handle(query: dns.message.Message, transport: str) -> Any:
        return None if rng.random() < 0.3 else _answer(query)

    return handle


def servfail_for_some(query: dns.message.Message, transport: str) -> Any:
    if fails_on(query.question[0].name.to_text()):
        return reply_with(query, rcode=dns.rcode.SERVFAIL)
    return _answer(query)


def slow(rng: random.Random) -> Any:
    def handle(query: dns.message.Message, transport: str) -> Any:
        return Delay(rng.uniform(0.0, 0.05), _answer(query))

    return handle


def spell(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)


def _qname_end(wire: bytes) -> int:
    pos = 12
    while wire[pos]:
        pos += 1 + wire[pos]
    return pos + 1


def _queries(rng: random.Random) -> list[tuple[str, bytes, float]]:
    """(name, query wire, when to send it): built up front, so dnspython's cost is not
    paid inside the burst. Half the clients send EDNS, every one spells the name its own way."""
    distinct = [f"n{i}.d{rng.randrange(1000)}.example." for i in range(DISTINCT)]
    hot = [f"hot{i}.example." for i in range(HOT)]
    names = distinct + hot * HOT_REPEATS
    rng.shuffle(names)
    out = []
    for name in names:
        edns = 0 if rng.random() < 0.5 else -1
        wire = dns.message.make_query(spell(name, rng), "A", use_edns=edns).to_wire()
        out.append((name, wire, rng.uniform(0.0, SPREAD)))
    return out


async def _client(
    resolver: Resolver, name: str, wire: bytes, delay: float
) -> tuple[str, bytes, bytes | None]:
    await asyncio.sleep(delay)
    return name, wire, await ask_wire(resolver, wire)


def _check_reply(name: str, wire: bytes, out: bytes | None) -> str:
    """Return "answer" or "servfail"; assert everything else about the reply."""
    assert out is not None, f"no reply for {name}"
    qend = _qname_end(wire)
    assert out[:2] == wire[:2], f"{name}: reply ID {out[:2].hex()} for query {wire[:2].hex()}"
    assert out[12:qend] == wire[12:qend], f"{name}: question spelling {out[12:qend]!r}"
    assert out[qend : qend + 4] == wire[qend : qend + 4], f"{name}: question type/class"
    reply = dns.message.from_wire(out)
    if reply.rcode() == dns.rcode.SERVFAIL:
        assert not reply.answer, f"{name}: SERVFAIL with answers"
        return "servfail"
    assert reply.rcode() == dns.rcode.NOERROR, f"{name}: {dns.rcode.to_text(reply.rcode())}"
    addresses = [
        (rrset.name, rdata.address)
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.A
        for rdata in rrset
    ]
    assert addresses == [(dns.name.from_text(name), address_for(name))], f"{name}: {addresses}"
    return "answer"


def test_concurrent_mixed_queries_against_misbehaving_upstreams() -> None:
    queries = _queries(random.Random(SEED))
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        async with (
            FakeUpstream(lossy(random.Random(SEED + 1))) as first,
            FakeUpstream(servfail_for_some) as second,
            FakeUpstream(slow(random.Random(SEED + 2))) as third,
        ):
            fakes = (first, second, third)
            for fake in fakes:
                # The fakes share the resolver's loop, which reads one datagram per socket per
                # iteration; a deeper buffer keeps a busy machine from dropping queries
                # the fake never chose to drop.
                sock = fake._udp.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            resolver = make_resolver(*fakes, timeout=TIMEOUT, cache_size=10_000)
            try:
                start = time.monotonic()
                results = await asyncio.gather(
                    *(_client(resolver, *query) for query in queries), return_exceptions=True
                )
                elapsed = time.monotonic() - start
                raised = [r for r in results if isinstance(r, BaseException)]
                assert not raised, f"{len(raised)} queries raised, first: {raised[0]!r}"
                kinds = {"answer": 0, "servfail": 0}
                for result in results:
                    assert not isinstance(result, BaseException)
                    kinds[_check_reply(*result)] += 1
                # Not vacuous: the reliable upstream answers well within the timeout, so most
                # clients get the answer (all of them on an idle machine; load costs some).
                assert kinds["answer"] >= 0.5 * len(queries), kinds
                assert elapsed < SPREAD + TIMEOUT + 2.0, elapsed
                # Every upstream saw traffic: the failover paths really ran.
                assert all(fake.received for fake in fakes), [len(f.received) for f in fakes]
                hot_set = {f"hot{i}.example." for i in range(HOT)}
                upstream_hot = sum(
                    1
                    for fake in fakes
                    for query in fake.queries()
                    if query.question[0].name.to_text().lower() in hot_set
                )
                client_hot = HOT * HOT_REPEATS
                assert upstream_hot <= client_hot // 10, (upstream_hot, client_hot)
                assert resolver._inflight == {}
                for upstream in resolver.client.upstreams:
                    assert not any(ch.pending for ch in upstream._channels)
            finally:
                resolver.client.close()
        gc.collect()  # surfaces "exception was never retrieved" while the handler is set

    run(main())
    assert not errors, [ctx.get("message") for ctx in errors]


def test_a_burst_of_misses_opens_at_most_the_configured_sockets_per_upstream() -> None:
    # upstream.py keeps "a small pool of connected UDP sockets" per upstream. Every query that
    # finds the pool short of SOCKETS_PER_UPSTREAM opens a socket, and the check happens before
    # the await that creates it, so a burst must not open one socket per concurrent miss.
    burst = 200

    async def main() -> None:
        async with FakeUpstream(slow(random.Random(SEED))) as up:
            resolver = make_resolver(up, timeout=TIMEOUT)
            try:
                wires = [
                    dns.message.make_query(f"burst{i}.example.", "A").to_wire()
                    for i in range(burst)
                ]
                outs = await asyncio.gather(*(ask_wire(resolver, wire) for wire in wires))
                assert all(out is not None for out in outs)
                ports = {received.source[1] for received in up.received}
                upstream = resolver.client.upstreams[0]
                pooled = len(upstream._channels)
                assert len(ports) <= SOCKETS_PER_UPSTREAM, (
                    f"{burst} concurrent misses came from {len(ports)} source ports; "
                    f"{pooled} sockets stay pooled (SOCKETS_PER_UPSTREAM = {SOCKETS_PER_UPSTREAM})"
                )
                assert pooled <= SOCKETS_PER_UPSTREAM, pooled
            finally:
                resolver.client.close()

    run(main())


def test_every_query_to_an_upstream_with_a_closed_port_gets_servfail() -> None:
    # Nothing listens on the port, so each UDP query draws ICMP port unreachable: the attempt
    # fails fast as a network error. It must keep failing that way, query after query, and the
    # client must get SERVFAIL each time, never an exception.
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    count = 3 * SOCKETS_PER_UPSTREAM

    async def main() -> None:
        closed = FakeUpstream(port=port)  # never started
        resolver = make_resolver(closed, timeout=TIMEOUT)
        try:
            for i in range(count):
                wire = dns.message.make_query(f"closed{i}.example.", "A").to_wire()
                try:
                    out = await ask_wire(resolver, wire)
                except Exception as exc:
                    raise AssertionError(f"query {i} of {count} raised {exc!r}") from exc
                assert out is not None and out[:2] == wire[:2]
                assert dns.message.from_wire(out).rcode() == dns.rcode.SERVFAIL
            upstream = resolver.client.upstreams[0]
            assert upstream.failures["network"] == count, upstream.failures
            assert resolver._inflight == {}
        finally:
            resolver.client.close()

    run(main())
