"""Micro-benchmark: the whole cache-hit path, raw query bytes -> reply bytes, in us per query.

Not a test: run with `make bench-wire`. Prints the median of several repeats for a few shapes of
query (same spelling as stored, a different case spelling, no EDNS, a new second so TTLs are
re-rendered once).
"""

from __future__ import annotations

import statistics
import timeit

import dns.message
import dns.rrset

from picodns.cache import Cache
from picodns.message import analyze_reply, scan_query, strip_opt
from picodns.resolver import Resolver
from picodns.upstream import UpstreamClient

REPEATS = 7
NUMBER = 200_000


def _resolver() -> Resolver:
    cache = Cache(10000)
    resolver = Resolver(cache, UpstreamClient([], 1.0), clock=lambda: 1000.0)
    query = dns.message.make_query("www.example.com.", "A", use_edns=0, want_dnssec=False)
    reply = dns.message.make_response(query)
    reply.answer.append(
        dns.rrset.from_text("www.example.com.", 300, "IN", "CNAME", "web.example.com.")
    )
    reply.answer.append(
        dns.rrset.from_text("web.example.com.", 300, "IN", "A", "192.0.2.1", "192.0.2.2")
    )
    wire = reply.to_wire()
    info = analyze_reply(wire)
    stripped, info = strip_opt(wire, info)
    scanned = scan_query(query.to_wire())
    assert scanned is not None
    cache.put(scanned[0], stripped, info, 1000.0)
    return resolver


def _measure(label: str, stmt: str, env: dict[str, object]) -> None:
    times = timeit.repeat(stmt, globals=env, repeat=REPEATS, number=NUMBER)
    per = statistics.median(times) / NUMBER * 1e6
    print(f"{label:<48} {per:6.2f} us/query")


def main() -> None:
    resolver = _resolver()
    lookup = resolver.lookup
    same = dns.message.make_query("www.example.com.", "A", use_edns=0).to_wire()
    mixed = dns.message.make_query("WWW.Example.COM.", "A", use_edns=0).to_wire()
    plain = dns.message.make_query("www.example.com.", "A").to_wire()
    assert lookup(same, 1000.5) is not None
    env = {"lookup": lookup, "same": same, "mixed": mixed, "plain": plain}
    _measure("hit, EDNS, same spelling", "lookup(same, 1000.5)", env)
    _measure("hit, EDNS, other case spelling", "lookup(mixed, 1000.5)", env)
    _measure("hit, no EDNS", "lookup(plain, 1000.5)", env)
    env["clock"] = iter(range(10**9)).__next__
    _measure("hit, EDNS, TTLs re-rendered every query", "lookup(same, 1000 + clock() % 200)", env)


if __name__ == "__main__":
    main()
