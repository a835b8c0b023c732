"""The DNS core's contract, checked on any bytes: by the fuzz target (fuzz_wire.py) and by the
property tests in the normal suite (tests/unit/test_wire_property.py), so both check one thing.

For any bytes, read_message, parse_query, scan_query, analyze_reply, and on what analyze_reply
accepts strip_opt, render_ttls and truncated_reply, and error_reply for every rcode, each return
a value or raise WireError: never another exception. Where two views accept the same bytes they
agree (scan_query with parse_query, analyze_reply with read_message), and every reply we
synthesize is one we would accept ourselves. A violation raises AssertionError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from picodns import message, wire
from picodns.errors import BADVERS, FORMERR, NOTIMP, REFUSED, SERVFAIL, WireError

__all__ = ["check"]

T = TypeVar("T")
RCODES = (FORMERR, SERVFAIL, REFUSED, NOTIMP, BADVERS)


def _value(func: Callable[..., T], *args: object, **kwargs: object) -> T | None:
    """Call `func`; WireError (with an rcode it may carry) becomes None. Anything else escapes."""
    try:
        return func(*args, **kwargs)
    except WireError as err:
        if err.rcode not in (None, FORMERR, NOTIMP, BADVERS):
            raise AssertionError(f"WireError with unexpected rcode {err.rcode}") from err
        return None


def _is_valid_name(prefix: bytes) -> bool:
    try:
        return wire.scan_qname(prefix, 0) == len(prefix)
    except WireError:
        return False


def check(data: bytes) -> int:
    """Run every view on `data`, assert the invariant; return how many views accepted it."""
    accepted = 0
    msg = _value(wire.read_message, data)
    query = _value(message.parse_query, data)
    scanned = _value(message.scan_query, data)
    accepted += (msg is not None) + (query is not None) + (scanned is not None)

    # A cache key that looks like a real question's key only comes from a valid query, and
    # then it is parse_query's key (else a cache hit could answer bytes parse_query rejects).
    if scanned is not None and _is_valid_name(scanned[0][:-5]):
        assert query is not None, "scan_query keyed a query parse_query rejects"
        assert scanned[:3] == (query.key, query.qend, query.limit), "scan_query != parse_query"
        plain = bool(query.flags & 0x0100) and query.qname == query.qname.lower()
        assert scanned[3] == plain, "scan_query's plain flag is wrong"
    if query is not None:
        assert msg is not None and msg.questions[0].name == query.qname

    for rcode in RCODES:
        for edns in (False, True):
            out = message.error_reply(data, rcode, edns=edns)
            if out is not None:
                assert wire.read_message(out).rcode == rcode, "error_reply made a bad reply"

    info = _value(message.analyze_reply, data)
    if info is None:
        return accepted
    accepted += 1
    if msg is not None:
        records = msg.answer + msg.authority + msg.additional
        assert info.ttl_offsets == [r.ttl_offset for r in records], "TTL offsets disagree"
        assert info.ancount == len(msg.answer)
        assert info.rcode == msg.rcode
        assert (info.opt_start >= 0) == (msg.edns is not None)
    packed = message.pack_ttls(info.ttl_offsets, info.ttls)
    rendered = message.render_ttls(data, packed, len(data) % 7)
    assert len(rendered) == len(data)
    cut = message.truncated_reply(data, info.qend, wire.write_opt(1232, True))
    assert wire.read_message(cut).questions, "truncated_reply lost the question"
    bare = message.truncated_reply(data, info.qend, b"")
    assert bare[12:] == data[12 : info.qend + 4], "truncated_reply changed the question"
    info.question(data)
    stripped = _value(message.strip_opt, data, info)
    if stripped is not None:
        out, out_info = stripped
        again = message.analyze_reply(out)
        assert again.opt_start == out_info.opt_start == -1
        assert again.ttl_offsets == out_info.ttl_offsets
    return accepted
