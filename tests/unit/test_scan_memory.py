"""The hot path's memory of scans: what a cache hit remembers, bounded in entries and in bytes
per entry, and freed a few entries at a time."""

from __future__ import annotations

import itertools

import dns.message
import dns.name

from picodns import message


def _forget_all() -> None:
    message._SCANS[0].clear()
    message._SCANS[1].clear()


def test_a_remembered_scan_comes_back_for_the_same_query_with_another_id() -> None:
    _forget_all()
    query = dns.message.make_query("memo.example.", "A")
    first = message.scan_query(query.to_wire())
    assert first is not None and first[4] is False  # scanned, not remembered
    assert message.scan_query(query.to_wire()) is not first  # not remembered by scanning
    message.remember_scan(query.to_wire(), first, first[0])
    query.id ^= 0xFFFF
    again = message.scan_query(query.to_wire())
    assert again is not None and again[:4] == first[:4] and again[4] is True
    assert message.scan_query(query.to_wire()) is again  # the same remembered tuple


def test_a_query_that_is_not_plain_is_remembered_as_such_at_once() -> None:
    _forget_all()
    response = dns.message.make_response(dns.message.make_query("r.example.", "A")).to_wire()
    assert message.scan_query(response) is None
    assert message._SCANS[0] == {response[2:]: None}


def test_scan_memory_is_bounded_and_the_retired_half_is_freed_gradually() -> None:
    _forget_all()
    sizes = []
    for i in range(3 * message.MAX_SCANS):
        wire = dns.message.make_query(f"n{i}.example.", "A").to_wire()
        scanned = message.scan_query(wire)
        assert scanned is not None
        message.remember_scan(wire, scanned, scanned[0])
        live, retired = message._SCANS
        sizes.append((len(live), len(retired)))
        assert len(live) <= message.MAX_SCANS
    # Twice the live generation filled up and was retired whole...
    retirements = [i for i in range(1, len(sizes)) if sizes[i][0] < sizes[i - 1][0]]
    assert len(retirements) == 2
    for i in retirements:
        assert sizes[i - 1][1] == 0  # ...when the one retired before was all freed...
        assert sizes[i][1] == message.MAX_SCANS - 4  # ...and then freed 4 per insert
    freed = [a[1] - b[1] for a, b in itertools.pairwise(sizes) if a[1] > b[1]]
    assert set(freed) == {4}


def test_long_queries_are_not_remembered() -> None:
    _forget_all()
    label = b"x" * 63
    name = dns.name.Name([label] * 3 + [b""])
    long_one = dns.message.make_query(name, "TXT", use_edns=0).to_wire()
    assert 200 < len(long_one) <= message.MAX_REMEMBERED
    scanned = message.scan_query(long_one)
    assert scanned is not None
    message.remember_scan(long_one, scanned, scanned[0])  # a real ~200-byte query is remembered...
    assert len(message._SCANS[0]) == 1
    huge = dns.message.make_query(name, "TXT", use_edns=0, pad=600).to_wire()
    assert len(huge) > message.MAX_REMEMBERED + 2
    scanned = message.scan_query(huge)
    assert scanned is not None
    message.remember_scan(huge, scanned, scanned[0])  # ...one over the bound is scanned, not kept
    assert len(message._SCANS[0]) == 1
