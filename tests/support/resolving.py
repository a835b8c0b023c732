"""Helpers to drive a Resolver in-process with raw query bytes and a test-controlled clock."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import dns.message

from picodns.cache import Cache
from picodns.resolver import Resolver
from picodns.upstream import Upstream, UpstreamClient
from tests.support.fake_upstream import FakeUpstream

T = TypeVar("T")


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_resolver(
    *fakes: FakeUpstream,
    timeout: float = 2.0,
    cache_size: int = 100,
    min_ttl: int = 0,
    max_ttl: int = 86400,
) -> Resolver:
    upstreams = [Upstream(f.host, f.port) for f in fakes]
    cache = Cache(cache_size, min_ttl, max_ttl)
    return Resolver(cache, UpstreamClient(upstreams, timeout), clock=Clock())


async def ask_wire(resolver: Resolver, wire: bytes, tcp: bool = False) -> bytes | None:
    """Ask the way the server does: cache fast path first, then the full path."""
    out = resolver.lookup(wire, resolver.clock(), tcp)
    if out is None:
        out = await resolver.resolve(wire, tcp)
    return out


async def ask(
    resolver: Resolver, qname: str, qtype: str = "A", tcp: bool = False, **kw: Any
) -> dns.message.Message:
    """Send a dnspython query through the resolver; return the parsed reply (ID checked)."""
    query = dns.message.make_query(qname, qtype, **kw)
    out = await ask_wire(resolver, query.to_wire(), tcp)
    assert out is not None
    reply = dns.message.from_wire(out)
    assert reply.id == query.id
    assert reply.question == query.question or str(reply.question) == str(query.question)
    return reply
