"""Metrics, part 2: Prometheus exposition of the counters, and the HTTP endpoint.

Nothing here runs per query. The counters live where they are counted (server, pool,
resolver, cache entries, upstreams); a scrape reads them through :class:`Collector` and
prometheus_client renders the text format. The HTTP endpoint runs on the serving event loop
(`/metrics`, `/health`, `/ready`), so a scrape never reads counters from another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector as _CollectorBase

from picodns import __version__
from picodns.metrics import QTYPE_NAMES, RCODE_NAMES
from picodns.resolver import Resolver
from picodns.server import Server

__all__ = ["Collector", "MetricsEndpoint", "drop_counts", "render"]

_MAX_REQUEST = 8192


def _qtype(qtype: int) -> str:
    return QTYPE_NAMES.get(qtype, "other")


def _rcode(rcode: int) -> str:
    return RCODE_NAMES.get(rcode, "other")


def _add(counts: dict[str, float], label: str, n: float) -> None:
    counts[label] = counts.get(label, 0) + n


class Collector(_CollectorBase):
    """Reads one process's counters at scrape time and yields Prometheus metric families."""

    def __init__(self, server: Server, resolver: Resolver, loop_name: str) -> None:
        self.server = server
        self.resolver = resolver
        self.loop_name = loop_name
        self.started = time.time()

    def collect(self) -> Iterator[Metric]:
        server, resolver = self.server, self.resolver
        cache, pool, stats = resolver.cache, server.pool, server.stats

        received = CounterMetricFamily(
            "picodns_queries", "Queries received, by transport.", labels=["transport"]
        )
        received.add_metric(["udp"], stats.udp_queries)
        received.add_metric(["tcp"], stats.tcp_queries)
        yield received

        by_type: dict[str, float] = {}
        by_rcode: dict[str, float] = {}
        hits = negative_hits = 0
        for (qtype, rcode, negative), n in cache.hit_counts().items():
            _add(by_type, _qtype(qtype), n)
            _add(by_rcode, _rcode(rcode), n)
            hits += n
            negative_hits += n if negative else 0
        for qtype, n in resolver.queries.items():
            _add(by_type, _qtype(qtype), n)
        for rcode, n in resolver.responses.items():
            _add(by_rcode, _rcode(rcode), n)
        yield _labelled(
            "picodns_queries_by_type", "Valid queries answered, by QTYPE.", "qtype", by_type
        )
        yield _labelled("picodns_responses", "Responses sent, by RCODE.", "rcode", by_rcode)

        yield _counter("picodns_cache_hits", "Queries answered from the cache.", hits)
        yield _counter(
            "picodns_cache_negative_hits",
            "Queries answered from a cached NXDOMAIN/NODATA.",
            negative_hits,
        )
        yield _counter("picodns_cache_misses", "Cache lookups that found nothing.", cache.misses)
        yield _counter(
            "picodns_cache_evictions",
            "Entries evicted to stay within -cache-size.",
            cache.evictions,
        )
        yield _counter("picodns_cache_expired", "Entries removed at expiry.", cache.expired)
        yield _gauge("picodns_cache_entries", "Entries in the cache.", len(cache))
        yield _counter(
            "picodns_coalesced",
            "Queries that waited for an identical question already in flight.",
            resolver.coalesced,
        )
        yield _labelled(
            "picodns_malformed_queries",
            "Client packets dropped or refused as malformed, by reason.",
            "reason",
            {**resolver.malformed, "oversize": stats.udp_oversize},
            counter=True,
        )

        client = resolver.client
        yield _counter(
            "picodns_tcp_fallbacks",
            "Upstream answers with TC=1 asked again over TCP.",
            client.tcp_fallbacks,
        )
        up_queries = CounterMetricFamily(
            "picodns_upstream_queries",
            "Queries sent upstream, by upstream and transport.",
            labels=["upstream", "transport"],
        )
        failures = CounterMetricFamily(
            "picodns_upstream_failures",
            "Upstream failures and ignored replies, by upstream and reason.",
            labels=["upstream", "reason"],
        )
        healthy = GaugeMetricFamily(
            "picodns_upstream_healthy", "1 while an upstream is healthy.", labels=["upstream"]
        )
        latency = HistogramMetricFamily(
            "picodns_upstream_latency_seconds",
            "Time from the first send to an accepted answer, by upstream.",
            labels=["upstream"],
        )
        for up in client.upstreams:
            name = up.address
            up_queries.add_metric([name, "udp"], up.queries)
            up_queries.add_metric([name, "tcp"], up.tcp_queries)
            for reason, n in up.failures.items():
                failures.add_metric([name, reason], n)
            healthy.add_metric([name], 1 if up.healthy else 0)
            buckets = [(_bound(b), n) for b, n in up.latency.cumulative()]
            latency.add_metric([name], buckets, up.latency.sum)
        yield from (up_queries, failures, healthy, latency)

        yield _gauge("picodns_queue_depth", "Misses waiting for a worker.", pool.depth)
        yield _gauge("picodns_queue_capacity", "The queue's bound (-queue-size).", pool.capacity)
        yield _gauge("picodns_inflight", "Misses being resolved by workers now.", pool.busy)
        yield _labelled(
            "picodns_queue_drops",
            "Misses dropped before a worker took them, by reason.",
            "reason",
            {"full": pool.dropped_full, "expired": pool.dropped_expired},
            counter=True,
        )
        # Caught at every callback edge of the miss path: the pool's, the resolver's, the
        # upstream client's timer and each upstream socket's reader.
        errors = pool.errors + resolver.errors + client.errors
        errors += sum(up.errors for up in client.upstreams)
        yield _counter(
            "picodns_worker_errors",
            "Unexpected errors while handling queries (each such query got SERVFAIL).",
            errors,
        )
        yield _gauge("picodns_tcp_connections", "Client TCP connections open.", stats.tcp_open)
        yield _counter(
            "picodns_tcp_refused",
            "Client TCP connections refused at -tcp-max-connections.",
            stats.tcp_refused,
        )
        yield _counter(
            "picodns_tcp_idle_closed",
            "Client TCP connections closed when idle.",
            stats.tcp_idle_closed,
        )
        yield _gauge(
            "picodns_start_time_seconds", "Process start, seconds since the epoch.", self.started
        )
        info = GaugeMetricFamily(
            "picodns_build_info",
            "Version, Python and event loop; always 1.",
            labels=["version", "python", "loop"],
        )
        info.add_metric([__version__, platform.python_version(), self.loop_name], 1)
        yield info


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(
    name: str, doc: str, label: str, values: dict[str, Any], counter: bool = True
) -> Metric:
    family: Metric
    if counter:
        family = CounterMetricFamily(name, doc, labels=[label])
    else:
        family = GaugeMetricFamily(name, doc, labels=[label])
    for key in sorted(values):
        family.add_metric([key], values[key])
    return family


def render(collector: Collector) -> bytes:
    """Return the Prometheus text exposition of `collector`'s metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def drop_counts(server: Server, resolver: Resolver) -> dict[str, int]:
    """Everything dropped so far, by reason, for the periodic warning line."""
    return {
        "queue full": server.pool.dropped_full,
        "waited too long": server.pool.dropped_expired,
        "oversize UDP": server.stats.udp_oversize,
        "TCP refused": server.stats.tcp_refused,
        "malformed": sum(resolver.malformed.values()),
    }


class MetricsEndpoint:
    """A minimal HTTP/1.0 server for /metrics, /health and /ready, one request per connection,
    on the serving loop. Its answers are awaited, so a supervisor can ask its children."""

    def __init__(
        self,
        metrics: Callable[[], Awaitable[bytes]],
        ready: Callable[[], Awaitable[bool]],
        healthy: Callable[[], bool] = lambda: True,
        not_ready: bytes = b"no healthy upstream\n",
    ) -> None:
        self.metrics = metrics
        self.ready = ready
        self.healthy = healthy
        self.not_ready = not_ready
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on (host, port); return the address bound (port 0 picks one)."""
        self._server = await asyncio.start_server(self._client, host or None, port)
        sockname: Sequence[Any] = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        parts = head[:_MAX_REQUEST].split(b" ", 2)
        method = parts[0]
        path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
        kind = "text/plain"
        if method not in (b"GET", b"HEAD"):
            status, body = "405 Method Not Allowed", b"method not allowed\n"
        elif path == b"/metrics":
            status, body = "200 OK", await self.metrics()
            kind = "text/plain; version=0.0.4; charset=utf-8"
        elif path == b"/health":
            ok = self.healthy()
            status = "200 OK" if ok else "503 Service Unavailable"
            body = b"ok\n" if ok else b"not serving\n"
        elif path == b"/ready":
            ok = await self.ready()
            status = "200 OK" if ok else "503 Service Unavailable"
            body = b"ready\n" if ok else self.not_ready
        else:
            status, body = "404 Not Found", b"not found\n"
        head_out = (
            f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        writer.write(head_out if method == b"HEAD" else head_out + body)
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()
