"""Instruction count of the cache-hit path under callgrind: steady numbers on a noisy machine.

Usage (from bench/, PYTHONPATH=../src:.):
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python count_hit_instructions.py N
Run with N and with 0; (total(N) - total(0)) / N is instructions per hit.
"""

from __future__ import annotations

import sys

import dns.message
from bench_hit import _resolver  # type: ignore[import-not-found]

n = int(sys.argv[1])
resolver = _resolver()
lookup = resolver.lookup
query = dns.message.make_query("www.example.com.", "A", use_edns=0).to_wire()
for _ in range(n):
    lookup(query, 1000.5)
