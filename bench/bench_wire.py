"""Micro-benchmark of the DNS core's hot-path functions: ns per call, median of 5 repeats.

The messages are built by hand, byte for byte, so the script needs nothing beyond picodns:

- query: www.example.com A, with EDNS (payload 1232, DO) and without EDNS;
- reply: www.example.com CNAME web.example.com, two A records for web.example.com, the SOA of
  example.com in authority and an OPT record, compressed as a server would send it.

Usage: .venv/bin/python bench/bench_wire.py
"""

from __future__ import annotations

import platform
import statistics
import struct
import sys
import timeit
from collections.abc import Callable

from picodns import message, wire

REPEATS = 5


def _header(flags: int, qd: int, an: int, ns: int, ar: int) -> bytes:
    return struct.pack("!6H", 0x4A4A, flags, qd, an, ns, ar)


def _rr(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def _ptr(offset: int) -> bytes:
    return struct.pack("!H", 0xC000 | offset)


QNAME = wire.text_to_name("www.example.com")
QUESTION = QNAME + struct.pack("!HH", 1, 1)
OPT_DO = wire.write_opt(1232, True)

QUERY_PLAIN = _header(0x0100, 1, 0, 0, 0) + QUESTION
QUERY_EDNS_DO = _header(0x0100, 1, 0, 0, 1) + QUESTION + OPT_DO


def _reply() -> bytes:
    example_com = 12 + 4  # "example.com" inside the question name
    head = _header(0x8180, 1, 3, 1, 1) + QUESTION
    cname_at = len(head)
    cname = _rr(_ptr(12), 5, 300, b"\x03web" + _ptr(example_com))
    web = cname_at + 12  # the CNAME's RDATA: web.example.com
    a1 = _rr(_ptr(web), 1, 60, bytes([192, 0, 2, 1]))
    a2 = _rr(_ptr(web), 1, 60, bytes([192, 0, 2, 2]))
    soa_rdata = (
        b"\x03ns1"
        + _ptr(example_com)
        + b"\x0ahostmaster"
        + _ptr(example_com)
        + struct.pack("!5I", 2024010101, 7200, 900, 1209600, 300)
    )
    soa = _rr(_ptr(example_com), 6, 900, soa_rdata)
    return head + cname + a1 + a2 + soa + OPT_DO


REPLY = _reply()


def _ns_per_call(func: Callable[[], object]) -> float:
    timer = timeit.Timer(func)
    number, _ = timer.autorange()
    runs = timer.repeat(repeat=REPEATS, number=number)
    return statistics.median(runs) / number * 1e9


def main(argv: list[str] | None = None) -> int:
    del argv
    # Sanity first: a benchmark of a function that fails fast would measure the failure.
    assert message.scan_query(QUERY_EDNS_DO) is not None
    assert message.scan_query(QUERY_PLAIN) is not None
    info = message.analyze_reply(REPLY)
    assert (info.ancount, len(info.ttl_offsets), info.opt_start >= 0) == (3, 4, True)
    table = message.pack_ttls(info.ttl_offsets, info.ttls)

    cases: list[tuple[str, int, Callable[[], object]]] = [
        (
            "scan_query   (A, EDNS+DO)",
            len(QUERY_EDNS_DO),
            lambda: message.scan_query(QUERY_EDNS_DO),
        ),
        ("scan_query   (A, no EDNS)", len(QUERY_PLAIN), lambda: message.scan_query(QUERY_PLAIN)),
        (
            "parse_query  (A, EDNS+DO)",
            len(QUERY_EDNS_DO),
            lambda: message.parse_query(QUERY_EDNS_DO),
        ),
        ("parse_query  (A, no EDNS)", len(QUERY_PLAIN), lambda: message.parse_query(QUERY_PLAIN)),
        ("analyze_reply (CNAME+2A+SOA+OPT)", len(REPLY), lambda: message.analyze_reply(REPLY)),
        ("render_ttls  (4 TTLs)", len(REPLY), lambda: message.render_ttls(REPLY, table, 7)),
    ]
    print(f"Python {sys.version.split()[0]} on {platform.machine()}, median of {REPEATS} repeats")
    print(f"{'function':36} {'bytes':>5} {'ns/op':>9}")
    for label, size, func in cases:
        print(f"{label:36} {size:5d} {_ns_per_call(func):9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
