"""Metrics end to end: scripted traffic through a running server, then a scrape of /metrics
parsed with prometheus_client's parser, asserting exact counts; /health and /ready."""

from __future__ import annotations

import math

import dns.flags
import dns.message
import dns.rcode

from tests.support.fake_upstream import Delay, FakeUpstream, answer, nxdomain, reply_with
from tests.support.resolving import run
from tests.support.scraping import http_get, scrape, value
from tests.support.serving import running, tcp_ask, udp_ask, udp_burst, udp_exchange


def scripted(query: dns.message.Message, transport: str) -> object:
    name = query.question[0].name.to_text()
    if name.startswith("nx"):
        return nxdomain()(query, transport)
    if name.startswith("big") and transport == "udp":
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.TC
        return reply
    if name.startswith("big"):
        return reply_with(query, f"{name} 300 IN TXT " + " ".join(['"' + "z" * 200 + '"'] * 8))
    if name.startswith("slow"):
        return Delay(0.3, answer()(query, transport))
    return answer()(query, transport)


def test_scripted_traffic_shows_exact_counts_in_metrics() -> None:
    async def main() -> None:
        async with (
            FakeUpstream(lambda q, t: None) as dead,
            FakeUpstream(scripted) as good,
            running(
                dead, good, metrics_listen=("127.0.0.1", 0), timeout=0.6, workers=1, queue_size=1
            ) as srv,
        ):
            dead_name, good_name = f"127.0.0.1:{dead.port}", f"127.0.0.1:{good.port}"
            # 1. A black-holed first upstream: one timeout, then the second answers.
            await udp_ask(srv, dns.message.make_query("first.example.", "A"))
            srv.resolver.client.upstreams[0].retry_at = math.inf  # no probe during this test
            # 2. Three misses, each then hit twice (one hit over TCP).
            for name in ("a.example.", "b.example.", "c.example."):
                for _ in range(3):
                    await udp_ask(srv, dns.message.make_query(name, "A"))
            await tcp_ask(srv, dns.message.make_query("a.example.", "A"))
            # 3. NXDOMAIN, then its negative hit.
            for _ in range(2):
                reply = await udp_ask(srv, dns.message.make_query("nx.example.", "AAAA"))
                assert reply.rcode() == dns.rcode.NXDOMAIN
            # 4. A TC=1 upstream answer, asked again over TCP.
            await udp_ask(srv, dns.message.make_query("big.example.", "TXT", use_edns=0))
            # 5. A malformed packet (truncated question) gets FORMERR.
            formerr = dns.message.make_query("m.example.", "A").to_wire()[:-3]
            assert await udp_exchange(srv, formerr) is not None
            # 6. Overflow: one worker, queue of one, a slow upstream.
            answered = await udp_burst(srv, [f"slow{i}.example." for i in range(6)], 1.2)

            assert srv.metrics is not None
            m = await scrape(srv.metrics)
            dropped = value(m, "picodns_queue_drops_total", reason="full")
            expired = value(m, "picodns_queue_drops_total", reason="expired")
            assert dropped >= 1 and dropped + expired + answered == 6, (dropped, expired, answered)
            udp_sent = 1 + 9 + 2 + 1 + 1 + 6
            assert value(m, "picodns_queries_total", transport="udp") == udp_sent
            assert value(m, "picodns_queries_total", transport="tcp") == 1
            assert value(m, "picodns_cache_hits_total") == 6 + 1 + 1
            assert value(m, "picodns_cache_negative_hits_total") == 1
            assert value(m, "picodns_cache_entries") == 1 + 3 + 1 + 1 + answered
            assert value(m, "picodns_responses_total", rcode="NXDOMAIN") == 2
            assert value(m, "picodns_responses_total", rcode="FORMERR") == 1
            noerror = 1 + 9 + 1 + 1 + answered  # first, a/b/c (incl. TCP hit), big, slow ones
            assert value(m, "picodns_responses_total", rcode="NOERROR") == noerror
            assert value(m, "picodns_queries_by_type_total", qtype="AAAA") == 2
            assert value(m, "picodns_queries_by_type_total", qtype="TXT") == 1
            assert value(m, "picodns_malformed_queries_total", reason="formerr") == 1
            assert value(m, "picodns_tcp_fallbacks_total") == 1
            timeouts = value(
                m, "picodns_upstream_failures_total", upstream=dead_name, reason="timeout"
            )
            assert timeouts == 1
            assert (
                value(m, "picodns_upstream_queries_total", upstream=dead_name, transport="udp") == 1
            )
            good_udp = 1 + 3 + 1 + 1 + answered
            assert (
                value(m, "picodns_upstream_queries_total", upstream=good_name, transport="udp")
                == good_udp
            )
            assert (
                value(m, "picodns_upstream_queries_total", upstream=good_name, transport="tcp") == 1
            )
            assert len(good.received) == good_udp + 1
            latency_count = value(m, "picodns_upstream_latency_seconds_count", upstream=good_name)
            assert latency_count == good_udp  # one per accepted answer (the TCP retry included)
            assert value(m, "picodns_upstream_healthy", upstream=dead_name) == 0
            assert value(m, "picodns_upstream_healthy", upstream=good_name) == 1
            assert value(m, "picodns_queue_capacity") == 1
            assert value(m, "picodns_worker_errors_total") == 0
            assert value(m, "picodns_start_time_seconds") > 0

    run(main())


def test_ready_flips_when_every_upstream_is_black_holed_and_back() -> None:
    state = {"dead": False}

    def flaky(query: dns.message.Message, transport: str) -> object:
        return None if state["dead"] else answer()(query, transport)

    async def main() -> None:
        async with (
            FakeUpstream(flaky) as up,
            running(up, metrics_listen=("127.0.0.1", 0), timeout=0.3) as srv,
        ):
            assert srv.metrics is not None
            assert await http_get(srv.metrics, "/health") == (200, "ok\n")
            assert (await http_get(srv.metrics, "/ready"))[0] == 200
            state["dead"] = True
            reply = await udp_ask(srv, dns.message.make_query("r1.example.", "A"))
            assert reply.rcode() == dns.rcode.SERVFAIL
            assert (await http_get(srv.metrics, "/ready"))[0] == 503
            assert (await http_get(srv.metrics, "/health"))[0] == 200
            state["dead"] = False
            srv.resolver.client.upstreams[0].retry_at = 0.0  # its backoff is over
            reply = await udp_ask(srv, dns.message.make_query("r2.example.", "A"))
            assert reply.rcode() == dns.rcode.NOERROR
            assert (await http_get(srv.metrics, "/ready"))[0] == 200
            assert (await http_get(srv.metrics, "/nope"))[0] == 404

    run(main())
