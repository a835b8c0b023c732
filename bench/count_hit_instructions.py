"""Instruction count of the cache-hit path under callgrind: steady numbers on a noisy machine.

Usage (from bench/, PYTHONPATH=../src:.):
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python count_hit_instructions.py N
Run with N and with 0; (total(N) - total(0)) / N is instructions per hit. With a second
argument `udp`, each hit goes through the server's UDP datagram callback (clock, lookup, send
to a stand-in transport that only counts) instead of calling `Resolver.lookup` alone.
"""

from __future__ import annotations

import sys

import dns.message
from bench_hit import _resolver  # type: ignore[import-not-found]
from standins import Transport  # type: ignore[import-not-found]

from picodns.server import Server, _Udp

n = int(sys.argv[1])
resolver = _resolver()
query = dns.message.make_query("www.example.com.", "A", use_edns=0).to_wire()
if sys.argv[2:] == ["udp"]:
    server = Server(resolver, workers=10, queue_size=10, max_wait=1.0, clock=lambda: 1000.5)
    udp = _Udp(server)
    transport = Transport()
    udp.transport = transport  # type: ignore[assignment]
    received = udp.datagram_received
    client = ("127.0.0.1", 5353)
    for _ in range(n):
        received(query, client)
    assert transport.replies == n
else:
    lookup = resolver.lookup
    for _ in range(n):
        lookup(query, 1000.5)
