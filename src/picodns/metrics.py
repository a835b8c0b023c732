"""Metrics, part 1 (a leaf): the few value types the other layers count with.

Counters everywhere are plain integer attributes on the objects that own them (one event loop
per process: no locks); they are read only when scraped (see :mod:`picodns.exposition`). The
one thing an integer cannot hold is a distribution, so this module has a fixed-bucket
histogram whose `observe` is a short scan and an add. Stdlib only.
"""

from __future__ import annotations

__all__ = ["LATENCY_BUCKETS", "QTYPE_NAMES", "RCODE_NAMES", "Histogram"]

# Seconds. Loopback upstreams answer in ~0.1-1 ms, the Internet in 5-200 ms, timeouts at 5 s.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# Bounded label sets: common types by name, the rest are reported as "other".
QTYPE_NAMES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
    33: "SRV", 35: "NAPTR", 43: "DS", 48: "DNSKEY", 52: "TLSA", 64: "SVCB", 65: "HTTPS",
    255: "ANY", 257: "CAA",
}  # fmt: skip
RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    16: "BADVERS",
}  # fmt: skip


class Histogram:
    """Counts of observations per bucket (upper bounds inclusive), their sum and count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        # A scan from the smallest bound, not bisect: observations are mostly in the first
        # buckets, and compiled this is a few C comparisons instead of a call with a boxed float.
        i = 0
        for bound in self.bounds:
            if value <= bound:
                break
            i += 1
        self.counts[i] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """How many observations."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= bound) pairs, ending with +Inf, as Prometheus wants."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
