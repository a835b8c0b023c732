"""The hot path's memory of scans is bounded in entries and in bytes per entry."""

from __future__ import annotations

import dns.message
import dns.name

from picodns import message


def test_repeated_query_with_another_id_reuses_the_scan() -> None:
    query = dns.message.make_query("memo.example.", "A")
    first = message.scan_query(query.to_wire())
    query.id ^= 0xFFFF
    again = message.scan_query(query.to_wire())
    assert first is not None and again is first  # the same remembered tuple


def test_scan_memory_is_bounded_in_entries() -> None:
    message._SCANS.clear()
    for i in range(message.MAX_SCANS + 10):
        message.scan_query(dns.message.make_query(f"n{i}.example.", "A").to_wire())
    assert 0 < len(message._SCANS) <= message.MAX_SCANS


def test_long_queries_are_not_remembered() -> None:
    message._SCANS.clear()
    label = b"x" * 63
    name = dns.name.Name([label] * 3 + [b""])
    long_one = dns.message.make_query(name, "TXT", use_edns=0).to_wire()
    assert 200 < len(long_one) <= message.MAX_REMEMBERED
    assert message.scan_query(long_one) is not None  # a real ~200-byte query is remembered...
    assert len(message._SCANS) == 1
    huge = dns.message.make_query(name, "TXT", use_edns=0, pad=600).to_wire()
    assert len(huge) > message.MAX_REMEMBERED + 2
    assert message.scan_query(huge) is not None  # ...one over the bound is scanned, not kept
    assert len(message._SCANS) == 1
