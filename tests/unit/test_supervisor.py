"""The supervisor's pure parts: merging the children's /metrics, and a child's Config on its
command line. The processes themselves are tested in tests/e2e/test_supervisor.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from picodns.config import Config
from picodns.supervisor import decode_config, encode_config, merge_metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def exposition(families: list[Metric]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry).decode()


def process(udp: float, start: float, version: str = "0.1.0", oversize: float | None = None) -> str:
    """The exposition of one child, in the shapes PicoDNS's collector yields."""
    queries = CounterMetricFamily("picodns_queries", "Queries.", labels=["transport"])
    queries.add_metric(["udp"], udp)
    queries.add_metric(["tcp"], 1)
    malformed = CounterMetricFamily("picodns_malformed_queries", "Bad.", labels=["reason"])
    if oversize is not None:
        malformed.add_metric(["oversize"], oversize)
    latency = HistogramMetricFamily("picodns_upstream_latency_seconds", "L.", labels=["upstream"])
    latency.add_metric(["127.0.0.1:53"], [("0.001", 1), ("0.01", 3), ("+Inf", 4)], 0.02)
    info = GaugeMetricFamily("picodns_build_info", "Info.", labels=["version"])
    info.add_metric([version], 1)
    entries = GaugeMetricFamily("picodns_cache_entries", "Entries.", value=udp)
    started = GaugeMetricFamily("picodns_start_time_seconds", "Start.", value=start)
    return exposition([queries, malformed, latency, entries, started, info])


def samples(families: list[Metric]) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(exposition(families)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counters_gauges_and_histograms_are_summed_by_name_and_labels() -> None:
    merged = samples(merge_metrics([process(7, 100.0), process(5, 90.0, oversize=2)]))
    assert merged[("picodns_queries_total", (("transport", "udp"),))] == 12
    assert merged[("picodns_queries_total", (("transport", "tcp"),))] == 2
    assert merged[("picodns_cache_entries", ())] == 12
    bucket = "picodns_upstream_latency_seconds_bucket"
    up = ("upstream", "127.0.0.1:53")
    assert merged[(bucket, (("le", "0.01"), up))] == 6
    assert merged[(bucket, (("le", "+Inf"), up))] == 8
    assert merged[("picodns_upstream_latency_seconds_count", (up,))] == 8
    assert merged[("picodns_upstream_latency_seconds_sum", (up,))] == pytest.approx(0.04)
    # A label set only one process has is kept as it is.
    assert merged[("picodns_malformed_queries_total", (("reason", "oversize"),))] == 2


def test_start_time_is_the_earliest_and_build_info_stays_one() -> None:
    merged = samples(merge_metrics([process(1, 100.0), process(1, 90.0), process(1, 95.0)]))
    assert merged[("picodns_start_time_seconds", ())] == 90.0
    assert merged[("picodns_build_info", (("version", "0.1.0"),))] == 1


def test_one_process_merged_renders_the_same_text() -> None:
    text = process(3, 100.0, oversize=1)
    assert exposition(merge_metrics([text])) == text


def test_no_process_is_no_metric_and_an_unparsable_text_is_left_out_whole() -> None:
    assert merge_metrics([]) == []
    broken = process(4, 100.0) + "picodns_queries_total{transport=\n"
    merged = samples(merge_metrics([broken, process(3, 100.0)]))
    assert merged[("picodns_queries_total", (("transport", "udp"),))] == 3


def test_a_config_survives_the_child_command_line() -> None:
    config = dataclasses.replace(
        Config(),
        listen=(("127.0.0.1", 5353), ("::1", 5353), ("", 53)),
        upstreams=(("192.0.2.1", 53),),
        metrics_listen=("127.0.0.1", 0),
        timeout=0.25,
        query_log=True,
        log_format="json",
    )
    assert decode_config(encode_config(config)) == config
    assert decode_config(encode_config(Config())) == Config()


@pytest.mark.parametrize(
    ("text", "error"),
    [("{not json", ValueError), ("[]", TypeError), ('{"no_such_field": 1}', TypeError)],
)
def test_a_bad_child_config_raises(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_config(text)
