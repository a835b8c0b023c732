"""The resolver end to end over real loopback sockets: raw queries in, a fake upstream behind.

Each test asserts both sides: what the upstream received and what the client got.
"""

from __future__ import annotations

import asyncio
import socket
import time

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from picodns import message
from picodns.upstream import _Exchange
from tests.support.fake_upstream import Delay, FakeUpstream, answer, nxdomain, reply_with
from tests.support.resolving import Clock, ask, ask_wire, make_resolver, run


def _ttl(reply: dns.message.Message, section: str = "answer") -> int:
    return int(getattr(reply, section)[0].ttl)


def test_cache_hit_does_not_reach_the_upstream() -> None:
    async def main() -> None:
        async with FakeUpstream(answer(ttl=300)) as up:
            resolver = make_resolver(up)
            first = await ask(resolver, "www.example.com")
            second = await ask(resolver, "www.example.com")
            assert len(up.received) == 1
            assert first.answer == second.answer
            assert resolver.cache.hits == 1
            resolver.client.close()

    run(main())


def test_ttl_decrements_with_time_and_entry_expires() -> None:
    async def main() -> None:
        async with FakeUpstream(answer(ttl=300)) as up:
            resolver = make_resolver(up)
            clock = resolver.clock
            assert isinstance(clock, Clock)
            assert _ttl(await ask(resolver, "a.example.")) == 300
            clock.now += 100.4
            assert _ttl(await ask(resolver, "a.example.")) == 200
            clock.now += 199
            assert _ttl(await ask(resolver, "a.example.")) == 1
            assert len(up.received) == 1
            clock.now += 1
            assert _ttl(await ask(resolver, "a.example.")) == 300  # expired: asked again
            assert len(up.received) == 2
            resolver.client.close()

    run(main())


def test_case_insensitive_key_with_case_preserving_reply() -> None:
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up)
            await ask(resolver, "www.example.com")
            query = dns.message.make_query("WwW.ExAmPlE.cOm", "A")
            wire = query.to_wire()
            out = await ask_wire(resolver, wire)
            assert out is not None
            assert len(up.received) == 1
            # The client's own spelling comes back byte for byte (RFC 4343).
            assert out[12 : 12 + 17] == wire[12 : 12 + 17]
            reply = dns.message.from_wire(out)
            assert reply.id == query.id
            assert reply.answer[0][0].address == "192.0.2.1"
            resolver.client.close()

    run(main())


def test_nxdomain_is_cached_for_soa_minimum_with_soa_ttl_aged() -> None:
    async def main() -> None:
        async with FakeUpstream(nxdomain(soa_ttl=3600, minimum=300)) as up:
            resolver = make_resolver(up)
            clock = resolver.clock
            assert isinstance(clock, Clock)
            reply = await ask(resolver, "nope.example.")
            assert reply.rcode() == dns.rcode.NXDOMAIN
            assert _ttl(reply, "authority") == 300
            clock.now += 50
            reply = await ask(resolver, "nope.example.")
            assert reply.rcode() == dns.rcode.NXDOMAIN
            assert reply.authority[0].rdtype == dns.rdatatype.SOA
            assert _ttl(reply, "authority") == 250
            assert len(up.received) == 1
            clock.now += 250
            await ask(resolver, "nope.example.")
            assert len(up.received) == 2
            resolver.client.close()

    run(main())


def test_nodata_is_cached_for_soa_ttl_when_smaller_than_minimum() -> None:
    async def main() -> None:
        async with FakeUpstream(nxdomain(soa_ttl=60, minimum=300, rcode=0)) as up:
            resolver = make_resolver(up)
            clock = resolver.clock
            assert isinstance(clock, Clock)
            reply = await ask(resolver, "a.example.", "AAAA")
            assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
            clock.now += 59
            await ask(resolver, "a.example.", "AAAA")
            assert len(up.received) == 1
            clock.now += 1
            await ask(resolver, "a.example.", "AAAA")
            assert len(up.received) == 2
            resolver.client.close()

    run(main())


def test_negative_reply_without_soa_is_not_cached() -> None:
    def handle(query: dns.message.Message, transport: str) -> dns.message.Message:
        return reply_with(query, rcode=dns.rcode.NXDOMAIN)

    async def main() -> None:
        async with FakeUpstream(handle) as up:
            resolver = make_resolver(up)
            for _ in range(2):
                assert (await ask(resolver, "x.example.")).rcode() == dns.rcode.NXDOMAIN
            assert len(up.received) == 2
            resolver.client.close()

    run(main())


def test_servfail_is_not_cached() -> None:
    def handle(query: dns.message.Message, transport: str) -> dns.message.Message:
        return reply_with(query, rcode=dns.rcode.SERVFAIL)

    async def main() -> None:
        async with FakeUpstream(handle) as up:
            resolver = make_resolver(up)
            for _ in range(2):
                assert (await ask(resolver, "x.example.")).rcode() == dns.rcode.SERVFAIL
            assert len(up.received) == 2
            assert resolver.client.upstreams[0].failures["servfail"] == 2
            resolver.client.close()

    run(main())


def _wrong_then_right(wrong: object) -> object:
    def handle(query: dns.message.Message, transport: str) -> object:
        right = reply_with(query, f"{query.question[0].name} 300 IN A 192.0.2.7")
        bad = wrong(query) if callable(wrong) else wrong
        return [bad, Delay(0.05, right)]

    return handle


def _resolves_to_right_answer(handler: object) -> None:
    async def main() -> None:
        async with FakeUpstream(handler) as up:  # type: ignore[arg-type]
            resolver = make_resolver(up)
            reply = await ask(resolver, "spoof.example.")
            assert reply.answer[0][0].address == "192.0.2.7"
            assert len(up.received) == 1
            resolver.client.close()

    run(main())


def test_wrong_id_reply_is_ignored_and_right_one_used() -> None:
    def wrong(query: dns.message.Message) -> dns.message.Message:
        reply = reply_with(query, f"{query.question[0].name} 300 IN A 6.6.6.6")
        reply.id = query.id ^ 0x5A5A
        return reply

    _resolves_to_right_answer(_wrong_then_right(wrong))


def test_mismatched_question_is_ignored() -> None:
    def wrong(query: dns.message.Message) -> dns.message.Message:
        other = dns.message.make_query("evil.example.", "A")
        other.id = query.id
        return reply_with(other, "evil.example. 300 IN A 6.6.6.6")

    _resolves_to_right_answer(_wrong_then_right(wrong))


def test_mismatched_qtype_is_ignored() -> None:
    def wrong(query: dns.message.Message) -> dns.message.Message:
        other = dns.message.make_query(query.question[0].name, "AAAA")
        other.id = query.id
        return reply_with(other)

    _resolves_to_right_answer(_wrong_then_right(wrong))


def test_compression_loop_reply_is_ignored() -> None:
    def wrong(query: dns.message.Message) -> bytes:
        good = reply_with(query, f"{query.question[0].name} 300 IN A 6.6.6.6").to_wire()
        qend = 12 + len(query.question[0].name.to_wire())
        # Replace the answer's owner (a pointer to the question) by a pointer to itself.
        start = qend + 4
        return good[:start] + bytes([0xC0 | (start >> 8), start & 0xFF]) + good[start + 2 :]

    _resolves_to_right_answer(_wrong_then_right(wrong))


def test_reply_from_a_different_source_port_is_ignored() -> None:
    fake_holder: list[FakeUpstream] = []

    def handle(query: dns.message.Message, transport: str) -> object:
        source = fake_holder[0].received[-1].source
        forged = reply_with(query, f"{query.question[0].name} 300 IN A 6.6.6.6")
        forged.id = query.id
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.sendto(forged.to_wire(), source)
        return Delay(0.05, reply_with(query, f"{query.question[0].name} 300 IN A 192.0.2.7"))

    async def main() -> None:
        async with FakeUpstream(handle) as up:
            fake_holder.append(up)
            resolver = make_resolver(up)
            reply = await ask(resolver, "port.example.")
            assert reply.answer[0][0].address == "192.0.2.7"
            resolver.client.close()

    run(main())


def test_truncated_udp_reply_is_retried_over_tcp_for_the_big_answer() -> None:
    big = " ".join(f'"{"x" * 250}"' for _ in range(12))  # ~3 KB of TXT

    def handle(query: dns.message.Message, transport: str) -> dns.message.Message:
        if transport == "udp":
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.TC
            return reply
        return reply_with(query, f"{query.question[0].name} 300 IN TXT {big}")

    async def main() -> None:
        async with FakeUpstream(handle) as up:
            resolver = make_resolver(up)
            reply = await ask(resolver, "big.example.", "TXT", use_edns=0, payload=4096)
            assert [r.transport for r in up.received] == ["udp", "tcp"]
            assert not reply.flags & dns.flags.TC
            assert len(b"".join(reply.answer[0][0].strings)) == 3000
            assert resolver.client.tcp_fallbacks == 1
            # A non-EDNS client is told to come back over TCP, and gets it all there.
            small = await ask(resolver, "big.example.", "TXT")
            assert small.flags & dns.flags.TC and not small.answer
            full = await ask(resolver, "big.example.", "TXT", tcp=True)
            assert len(b"".join(full.answer[0][0].strings)) == 3000
            assert len(up.received) == 2
            resolver.client.close()

    run(main())


def test_black_holed_first_upstream_fails_over_to_second_within_timeout() -> None:
    async def main() -> None:
        async with FakeUpstream(lambda q, t: None) as dead, FakeUpstream(answer()) as alive:
            resolver = make_resolver(dead, alive, timeout=1.0)
            start = time.monotonic()
            reply = await ask(resolver, "fo.example.")
            elapsed = time.monotonic() - start
            assert reply.answer[0][0].address == "192.0.2.1"
            assert len(dead.received) == 1 and len(alive.received) == 1
            assert elapsed < 1.0 + 0.5
            # The dead one is marked down: the next miss goes straight to the live one.
            assert not resolver.client.upstreams[0].healthy
            await ask(resolver, "fo2.example.")
            assert len(dead.received) == 1 and len(alive.received) == 2
            resolver.client.close()

    run(main())


def test_down_upstream_is_probed_again_and_comes_back() -> None:
    state = {"dead": True}

    def flaky(query: dns.message.Message, transport: str) -> object:
        return None if state["dead"] else answer()(query, transport)

    async def main() -> None:
        async with FakeUpstream(flaky) as first, FakeUpstream(answer()) as second:
            resolver = make_resolver(first, second, timeout=0.5)
            await ask(resolver, "p1.example.")
            upstream = resolver.client.upstreams[0]
            assert not upstream.healthy
            state["dead"] = False
            upstream.retry_at = 0.0  # its backoff is over
            await ask(resolver, "p2.example.")
            assert upstream.healthy
            assert len(first.received) == 2 and len(second.received) == 1
            resolver.client.close()

    run(main())


def test_all_upstreams_down_gives_servfail_within_the_timeout() -> None:
    async def main() -> None:
        drop = lambda q, t: None  # noqa: E731
        async with FakeUpstream(drop) as a, FakeUpstream(drop) as b:
            resolver = make_resolver(a, b, timeout=0.6)
            start = time.monotonic()
            reply = await ask(resolver, "down.example.")
            elapsed = time.monotonic() - start
            assert reply.rcode() == dns.rcode.SERVFAIL
            assert len(a.received) == 1 and len(b.received) == 1
            assert elapsed < 0.6 + 0.4
            resolver.client.close()

    run(main())


def test_concurrent_identical_questions_cause_one_upstream_query() -> None:
    def slow(query: dns.message.Message, transport: str) -> object:
        return Delay(0.2, answer()(query, transport))

    async def main() -> None:
        async with FakeUpstream(slow) as up:
            resolver = make_resolver(up)
            queries = [dns.message.make_query("Same.Example.", "A") for _ in range(200)]
            outs = await asyncio.gather(*(resolver.resolve(q.to_wire()) for q in queries))
            assert len(up.received) == 1
            assert resolver.coalesced == 199
            for query, out in zip(queries, outs, strict=True):
                assert out is not None
                reply = dns.message.from_wire(out)
                assert reply.id == query.id
                assert reply.answer[0][0].address == "192.0.2.1"
            resolver.client.close()

    run(main())


def test_min_and_max_ttl_clamp_stored_ttls() -> None:
    async def main() -> None:
        async with FakeUpstream(answer(ttl=5)) as low, FakeUpstream(answer(ttl=99999)) as high:
            r_low = make_resolver(low, min_ttl=60)
            assert _ttl(await ask(r_low, "c.example.")) == 60
            clock = r_low.clock
            assert isinstance(clock, Clock)
            clock.now += 30
            assert _ttl(await ask(r_low, "c.example.")) == 30
            assert len(low.received) == 1
            r_high = make_resolver(high, max_ttl=3600)
            assert _ttl(await ask(r_high, "c.example.")) == 3600
            r_low.client.close()
            r_high.client.close()

    run(main())


def test_upstream_query_carries_our_opt_with_client_do_bit_and_rd() -> None:
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up)
            await ask(resolver, "d.example.", use_edns=0, payload=4096, want_dnssec=True)
            await ask(resolver, "e.example.")
            first, second = up.queries()
            assert first.edns == 0 and first.payload == 1232
            assert first.ednsflags & dns.flags.DO
            assert second.edns == 0 and not second.ednsflags & dns.flags.DO
            assert first.flags & dns.flags.RD and first.id != 0
            resolver.client.close()

    run(main())


def test_do_bit_is_part_of_the_cache_key() -> None:
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up)
            await ask(resolver, "k.example.", use_edns=0)
            await ask(resolver, "k.example.", use_edns=0, want_dnssec=True)
            await ask(resolver, "k.example.")  # no EDNS shares the DO=0 entry
            assert len(up.received) == 2
            resolver.client.close()

    run(main())


def test_client_id_rd_and_ra_in_replies_from_cache_and_upstream() -> None:
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up)
            miss = await ask(resolver, "f.example.")
            query = dns.message.make_query("f.example.", "A")
            query.flags &= ~dns.flags.RD
            out = await ask_wire(resolver, query.to_wire())
            assert out is not None
            hit = dns.message.from_wire(out)
            assert miss.flags & dns.flags.RA and hit.flags & dns.flags.RA
            assert miss.flags & dns.flags.RD and not hit.flags & dns.flags.RD
            assert hit.id == query.id
            resolver.client.close()

    run(main())


def test_malformed_and_special_queries_get_the_rfc_rcode_without_upstream() -> None:
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up)
            q = dns.message.make_query("g.example.", "A")
            wire = q.to_wire()
            assert await resolver.resolve(wire[:5]) is None  # shorter than a header: dropped
            response = dns.message.make_response(q).to_wire()
            assert await resolver.resolve(response) is None  # QR=1: never answered
            out = await resolver.resolve(wire[:-2])  # truncated question
            assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.FORMERR
            axfr = dns.message.make_query("g.example.", "AXFR").to_wire()
            out = await resolver.resolve(axfr)
            assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.REFUSED
            notify = dns.message.make_query("g.example.", "SOA")
            notify.set_opcode(4)
            out = await resolver.resolve(notify.to_wire())
            assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.NOTIMP
            v1 = dns.message.make_query("g.example.", "A", use_edns=1).to_wire()
            out = await resolver.resolve(v1)
            assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.BADVERS
            assert up.received == []
            resolver.client.close()

    run(main())


def test_name_with_zero_octet_in_a_label_is_cached_and_answered_on_both_paths() -> None:
    # The scan walks labels, so a zero octet inside one does not end the name early.
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up)
            name = dns.name.Name([b"a\x00b", b"example", b""])
            query = dns.message.make_query(name, "A")
            wire = query.to_wire()
            first = await ask_wire(resolver, wire)
            assert first is not None
            hit = resolver.lookup(wire, resolver.clock())  # the fast path finds the entry
            assert hit is not None
            second = await resolver.resolve(wire)  # ...and so does the slow path
            assert second is not None
            assert len(up.received) == 1
            assert up.queries()[0].question[0].name == name
            for out in (first, hit, second):
                reply = dns.message.from_wire(out)
                assert reply.id == query.id and reply.question[0].name == name
                assert reply.answer[0][0].address == "192.0.2.1"
            resolver.client.close()

    run(main())


def test_forwarded_and_cached_answers_clear_aa_and_set_ra() -> None:
    def authoritative(query: dns.message.Message, transport: str) -> dns.message.Message:
        reply = answer()(query, transport)
        reply.flags |= dns.flags.AA
        reply.flags &= ~dns.flags.RA
        return reply

    async def main() -> None:
        async with FakeUpstream(authoritative) as up:
            resolver = make_resolver(up)
            for _ in range(2):  # the miss, then the hit
                reply = await ask(resolver, "aa.example.")
                assert not reply.flags & dns.flags.AA
                assert reply.flags & dns.flags.RA
            assert len(up.received) == 1
            resolver.client.close()

    run(main())


def test_cname_chain_ending_in_nodata_is_bounded_by_the_soa() -> None:
    def chain(query: dns.message.Message, transport: str) -> dns.message.Message:
        reply = reply_with(query, f"{query.question[0].name} 86400 IN CNAME target.example.")
        soa = "ns.example. host.example. 1 7200 900 1209600 30"
        reply.authority.append(dns.rrset.from_text("example.", 3600, "IN", "SOA", soa))
        return reply

    async def main() -> None:
        async with FakeUpstream(chain) as up:
            resolver = make_resolver(up)
            clock = resolver.clock
            assert isinstance(clock, Clock)
            reply = await ask(resolver, "alias.example.", "AAAA")
            assert _ttl(reply, "authority") == 30
            clock.now += 29
            await ask(resolver, "alias.example.", "AAAA")
            assert len(up.received) == 1
            clock.now += 1
            await ask(resolver, "alias.example.", "AAAA")  # the denial expired with the SOA
            assert len(up.received) == 2
            resolver.client.close()

    run(main())


def test_a_reused_upstream_id_is_not_forgotten_by_the_query_that_freed_it() -> None:
    # The reply to query A frees its ID; query B on the same socket may draw that ID before a
    # late cleanup of A runs. A's cleanup must not remove B's entry (B would then time out).
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up)
            upstream = resolver.client.upstreams[0]
            question = b"\x01a\x00\x00\x01\x00\x01"
            data, _info = await resolver.client.query(question)
            assert data[12:19] == question
            (channel,) = upstream._channels
            older, newer = (
                _Exchange(resolver.client, question, False, False, lambda _: None, 0.0)
                for _ in range(2)
            )
            channel.pending[4242] = newer  # B holds A's old ID
            channel.forget(4242, older)  # A's late cleanup
            assert channel.pending[4242] is newer
            channel.forget(4242, newer)  # B's own cleanup
            assert 4242 not in channel.pending
            resolver.client.close()

    run(main())


def test_only_a_query_answered_from_the_cache_is_remembered_by_the_hot_path() -> None:
    # A stream of unique names (all misses) must not churn the scan memory; a hit fills it.
    async def main() -> None:
        async with FakeUpstream(answer()) as up:
            resolver = make_resolver(up)
            message._SCANS[0].clear()
            query = dns.message.make_query("remember.example.", "A")
            wire = query.to_wire()
            assert await ask_wire(resolver, wire) is not None  # a miss, answered upstream
            assert wire[2:] not in message._SCANS[0]
            query.id ^= 0x5A5A
            again = query.to_wire()
            assert resolver.lookup(again, resolver.clock()) is not None  # a hit
            assert wire[2:] in message._SCANS[0]
            remembered = message.scan_query(wire)
            assert remembered is not None and remembered[4] is True
            third = resolver.lookup(wire, resolver.clock())
            assert third is not None and dns.message.from_wire(third).id == query.id ^ 0x5A5A
            assert len(up.received) == 1
            resolver.client.close()

    run(main())
