"""The latency histogram: Prometheus semantics (upper bounds inclusive, cumulative, +Inf)."""

from __future__ import annotations

import bisect
import random

from picodns.metrics import LATENCY_BUCKETS, Histogram


def test_each_observation_lands_in_the_first_bucket_whose_bound_is_not_below_it() -> None:
    h = Histogram((0.001, 0.01, 0.1))
    for value in (0.0, 0.001, 0.0010001, 0.01, 0.05, 0.1, 0.2, 7.0):
        h.observe(value)
    assert h.counts == [2, 2, 2, 2]  # <=1ms: 0, 1ms; <=10ms; <=100ms; +Inf: 0.2, 7
    assert h.count == 8
    assert h.cumulative() == [(0.001, 2), (0.01, 4), (0.1, 6), (float("inf"), 8)]
    assert abs(h.sum - (0.0 + 0.001 + 0.0010001 + 0.01 + 0.05 + 0.1 + 0.2 + 7.0)) < 1e-12


def test_buckets_agree_with_bisect_over_random_values() -> None:
    # bisect_left on the bounds is the definition: first bound >= value.
    rng = random.Random(6)
    h = Histogram()
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    for _ in range(5000):
        value = rng.choice(LATENCY_BUCKETS) if rng.random() < 0.2 else rng.uniform(0, 12)
        h.observe(value)
        expected[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
    assert h.counts == expected
