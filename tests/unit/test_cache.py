"""The reply cache on its own: no sockets, no sleeping. Time is the `now` argument.

Replies are built with dnspython (the oracle), walked by :func:`picodns.message.analyze_reply`,
stripped of OPT the way the resolver does, and stored under the key
:func:`picodns.message.scan_query` computes for the query. What the cache renders is parsed
back with dnspython, so every TTL check reads the bytes a client would get.
"""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from picodns.cache import MAX_CACHED_REPLY, OUR_PAYLOAD, Cache, Entry, shard_count
from picodns.message import analyze_reply, scan_query, strip_opt

T0 = 1000.0
SOA = "ns.example. host.example. 1 7200 900 1209600 {minimum}"


def _query(name: str = "www.example.", rdtype: str = "A", do: bool = False) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, use_edns=0, want_dnssec=do)


def _key(query: dns.message.Message) -> bytes:
    scanned = scan_query(query.to_wire())
    assert scanned is not None
    return scanned[0]


def _reply(
    query: dns.message.Message,
    answer: tuple[str, ...] = (),
    authority: tuple[str, ...] = (),
    additional: tuple[str, ...] = (),
    rcode: int = dns.rcode.NOERROR,
) -> dns.message.Message:
    """A response to `query`; records are "name ttl TYPE rdata" (class IN)."""
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    for section, texts in (
        (response.answer, answer),
        (response.authority, authority),
        (response.additional, additional),
    ):
        for text in texts:
            name, ttl, rdtype, rdata = text.split(None, 3)
            section.append(dns.rrset.from_text(name, int(ttl), "IN", rdtype, rdata))
    return response


def _a(ttl: int = 300, name: str = "www.example.") -> dns.message.Message:
    query = _query(name)
    return _reply(query, answer=(f"{name} {ttl} A 192.0.2.1",))


def _put_wire(cache: Cache, key: bytes, wire: bytes, now: float) -> Entry | None:
    data, info = strip_opt(wire, analyze_reply(wire))
    return cache.put(key, data, info, now)


def _put(cache: Cache, response: dns.message.Message, now: float = T0) -> Entry | None:
    """Store `response` under the key of the question it answers, as the resolver does."""
    query = dns.message.make_query(response.question[0].name, response.question[0].rdtype)
    query.use_edns(0, dns.flags.DO if response.ednsflags & dns.flags.DO else 0)
    return _put_wire(cache, _key(query), response.to_wire(), now)


def _store(cache: Cache, query: dns.message.Message, response: dns.message.Message) -> Entry:
    entry = _put_wire(cache, _key(query), response.to_wire(), T0)
    assert entry is not None
    return entry


def _parsed(entry: Entry, opt: bool = False) -> dns.message.Message:
    return dns.message.from_wire(entry.rendered_opt if opt else entry.rendered)


def _ttls(message: dns.message.Message) -> list[tuple[str, int]]:
    """(section/type, TTL) of every RRset, in message order, OPT excluded."""
    out = []
    for label, section in (
        ("an", message.answer),
        ("ns", message.authority),
        ("ar", message.additional),
    ):
        for rrset in section:
            out.append((f"{label}/{dns.rdatatype.to_text(rrset.rdtype)}", int(rrset.ttl)))
    return out


def _not_cached(cache: Cache, response: dns.message.Message) -> None:
    before = cache.not_cacheable
    assert _put(cache, response) is None
    assert len(cache) == 0
    assert cache.not_cacheable == before + 1
    assert cache.get(_key(_query(str(response.question[0].name))), T0) is None


# --- LRU and expiry ----------------------------------------------------------------------------


def test_lru_evicts_least_recently_used_and_get_protects_an_entry() -> None:
    cache = Cache(3)
    keys = {}
    for name in ("a", "b", "c"):
        query = _query(f"{name}.example.")
        keys[name] = _key(query)
        _store(cache, query, _reply(query, answer=(f"{name}.example. 300 A 192.0.2.1",)))
    assert cache.keys() == [keys["a"], keys["b"], keys["c"]]
    assert cache.get(keys["a"], T0 + 1) is not None  # a is now the most recently used
    assert cache.keys() == [keys["b"], keys["c"], keys["a"]]
    for name in ("d", "e"):
        query = _query(f"{name}.example.")
        keys[name] = _key(query)
        _store(cache, query, _reply(query, answer=(f"{name}.example. 300 A 192.0.2.1",)))
    assert len(cache) == 3
    assert cache.evictions == 2
    assert cache.keys() == [keys["a"], keys["d"], keys["e"]]
    assert cache.get(keys["b"], T0 + 2) is None
    assert cache.get(keys["c"], T0 + 2) is None
    assert cache.get(keys["a"], T0 + 2) is not None


def test_storing_a_key_again_replaces_it_without_eviction() -> None:
    cache = Cache(3)
    query = _query()
    _store(cache, query, _a(ttl=300))
    entry = _store(cache, query, _reply(query, answer=("www.example. 60 A 192.0.2.9",)))
    assert len(cache) == 1 and cache.evictions == 0
    got = cache.get(_key(query), T0)
    assert got is entry
    assert _parsed(got).answer[0][0].address == "192.0.2.9"


def test_expired_entry_is_never_served_and_is_reclaimed_on_get() -> None:
    cache = Cache(10)
    key = _key(_query())
    entry = _put(cache, _a(ttl=300))
    assert entry is not None
    assert entry.expires == T0 + 300
    assert cache.get(key, T0 + 299.999) is entry
    assert len(cache) == 1 and cache.expired == 0
    misses = cache.misses
    assert cache.get(key, T0 + 300) is None  # exactly at `expires`: already dead
    assert len(cache) == 0
    assert cache.expired == 1
    assert cache.misses == misses + 1
    assert cache.get(key, T0 + 300) is None
    assert cache.expired == 1  # gone, not expired twice


def test_expired_entries_at_the_lru_end_are_swept_when_storing() -> None:
    # Every 8th store looks at the LRU end: expired entries there go within 8 stores, with
    # nobody asking for them again.
    cache = Cache(20)
    _put(cache, _a(ttl=10, name="old1.example."))
    _put(cache, _a(ttl=10, name="old2.example."))
    _put(cache, _a(ttl=300, name="live.example."))
    assert len(cache) == 3
    new = [f"new{i}.example." for i in range(8)]
    for name in new:
        _put(cache, _a(ttl=300, name=name), now=T0 + 10)
    assert cache.expired == 2
    names = ["live.example.", *new]
    assert cache.keys() == [_key(_query(name)) for name in names]
    assert cache.evictions == 0


# --- Rendering and TTL aging -------------------------------------------------------------------


@pytest.mark.parametrize("do", [False, True])
def test_rendered_reply_ages_ttls_and_rendered_opt_carries_our_opt(do: bool) -> None:
    query = _query(do=do)
    response = _reply(
        query,
        answer=("www.example. 300 CNAME web.example.", "web.example. 200 A 192.0.2.1"),
        authority=("example. 3600 NS ns.example.",),
        additional=("ns.example. 1000 A 192.0.2.53",),
    )
    cache = Cache(10)
    _store(cache, query, response)
    entry = cache.get(_key(query), T0 + 100.7)
    assert entry is not None
    plain = _parsed(entry)
    expected = [("an/CNAME", 200), ("an/A", 100), ("ns/NS", 3500), ("ar/A", 900)]
    assert _ttls(plain) == expected
    assert plain.edns == -1  # EDNS is hop by hop: the upstream's OPT is gone
    assert plain.rcode() == dns.rcode.NOERROR  # (kept without an ID: each client gets its own)
    with_opt = _parsed(entry, opt=True)
    assert _ttls(with_opt) == expected
    assert with_opt.edns == 0
    assert with_opt.payload == OUR_PAYLOAD == 1232
    assert bool(with_opt.ednsflags & dns.flags.DO) is do
    assert with_opt.answer == plain.answer


def test_ttls_age_by_whole_seconds_and_stop_at_zero() -> None:
    query = _query()
    response = _reply(query, answer=("www.example. 30 A 192.0.2.1",))
    cache = Cache(10)
    _store(cache, query, response)
    entry = cache.get(_key(query), T0 + 29.99)
    assert entry is not None
    assert _ttls(_parsed(entry)) == [("an/A", 1)]
    # A TTL longer than the entry's lifetime (additional data) stops at 0, never wraps.
    response = _reply(
        query,
        answer=("www.example. 5 A 192.0.2.1",),
        additional=("www.example. 2 AAAA 2001:db8::1",),
    )
    _store(cache, query, response)
    entry = cache.get(_key(query), T0 + 4.5)
    assert entry is not None
    assert _ttls(_parsed(entry)) == [("an/A", 1), ("ar/AAAA", 0)]


def test_rendering_is_reused_within_a_second_and_changes_when_it_ticks() -> None:
    query = _query()
    cache = Cache(10)
    stored_at = T0 + 0.5
    entry = _put_wire(cache, _key(query), _a(ttl=300).to_wire(), stored_at)
    assert entry is not None
    key = _key(query)
    seen = []
    for now in (0.5, 0.9, 1.2, 1.499, 1.5, 1.7, 2.49, 2.5, 10.5):
        got = cache.get(key, T0 + now)
        assert got is not None
        seen.append((got.rendered, got.rendered_opt))
        # Whatever was reused, the content is what a fresh rendering for this moment gives.
        age = int(T0 + now - stored_at)
        assert _ttls(_parsed(got)) == [("an/A", 300 - age)]
        assert _ttls(_parsed(got, opt=True)) == [("an/A", 300 - age)]
    # Same second since storing: byte-identical; each tick: new bytes.
    assert seen[0] == seen[1] == seen[2] == seen[3]
    assert seen[4] == seen[5] == seen[6] != seen[3]
    assert seen[7] != seen[6] and seen[8] != seen[7]


# --- What is cached, and for how long ----------------------------------------------------------


def test_ttl_with_top_bit_set_counts_as_zero() -> None:
    query = _query()
    response = _a(ttl=300)
    wire = bytearray(response.to_wire())
    # The answer's TTL sits after the question and the answer's owner (a 2-byte pointer),
    # type and class. Written by hand so the test does not trust the code under test for it.
    ttl_at = len(query.to_wire()) - 11 + 2 + 4  # query minus its 11-byte OPT = header+question
    assert struct.unpack_from("!I", wire, ttl_at)[0] == 300
    struct.pack_into("!I", wire, ttl_at, 0x80000005)
    cache = Cache(10, min_ttl=0)
    assert _put_wire(cache, _key(query), bytes(wire), T0) is None
    assert len(cache) == 0 and cache.not_cacheable == 1
    # With a floor it is cached for the floor, and served as the floor, not as 2**31 + 5.
    floored = Cache(10, min_ttl=30)
    entry = _put_wire(floored, _key(query), bytes(wire), T0)
    assert entry is not None
    assert entry.expires == T0 + 30
    assert _ttls(_parsed(entry)) == [("an/A", 30)]


def test_min_and_max_ttl_clamp_every_ttl_in_the_stored_reply() -> None:
    query = _query()
    response = _reply(
        query,
        answer=("www.example. 5 CNAME web.example.", "web.example. 100000 A 192.0.2.1"),
        authority=("example. 10 NS ns.example.", "sub.example. 99999 NS ns2.example."),
        additional=("ns.example. 200000 A 192.0.2.53", "ns2.example. 1 A 192.0.2.54"),
    )
    cache = Cache(10, min_ttl=60, max_ttl=3600)
    entry = _store(cache, query, response)
    assert _ttls(_parsed(entry)) == [
        ("an/CNAME", 60),
        ("an/A", 3600),
        ("ns/NS", 60),
        ("ns/NS", 3600),
        ("ar/A", 3600),
        ("ar/A", 60),
    ]
    assert entry.expires == T0 + 60  # lifetime: the smallest answer TTL, after clamping
    assert cache.get(_key(query), T0 + 59.9) is entry
    assert cache.get(_key(query), T0 + 60) is None
    # The ceiling bounds the lifetime as well as the TTLs the client sees.
    entry = _store(cache, query, _reply(query, answer=("www.example. 86400 A 192.0.2.1",)))
    assert entry.expires == T0 + 3600
    assert _ttls(_parsed(entry)) == [("an/A", 3600)]


def test_positive_lifetime_is_the_smallest_answer_ttl_not_authority() -> None:
    query = _query()
    response = _reply(
        query,
        answer=(
            "www.example. 300 CNAME a.example.",
            "a.example. 120 CNAME b.example.",
            "b.example. 600 A 192.0.2.1",
        ),
        authority=("example. 30 NS ns.example.",),
        additional=("ns.example. 10 A 192.0.2.53",),
    )
    cache = Cache(10)
    entry = _store(cache, query, response)
    assert entry.negative is False
    assert entry.expires == T0 + 120
    assert cache.get(_key(query), T0 + 119.99) is entry
    assert cache.get(_key(query), T0 + 120) is None


@pytest.mark.parametrize(
    ("soa_ttl", "minimum", "lifetime"),
    [(3600, 300, 300), (60, 300, 60), (0x80000000 + 50, 300, 0)],
)
@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
def test_negative_lifetime_is_min_of_soa_ttl_and_minimum_and_becomes_the_soa_ttl(
    rcode: int, soa_ttl: int, minimum: int, lifetime: int
) -> None:
    query = _query("nope.example.", "AAAA")
    response = _reply(
        query,
        authority=(f"example. {soa_ttl} SOA {SOA.format(minimum=minimum)}",),
        rcode=rcode,
    )
    cache = Cache(10)
    entry = _put_wire(cache, _key(query), response.to_wire(), T0)
    if lifetime == 0:  # an SOA TTL with the top bit set is 0: nothing to cache for
        assert entry is None and len(cache) == 0
        return
    assert entry is not None
    assert entry.negative is True
    assert entry.expires == T0 + lifetime
    stored = _parsed(entry)
    assert stored.rcode() == rcode and not stored.answer
    assert _ttls(stored) == [("ns/SOA", lifetime)]
    assert stored.authority[0][0].minimum == minimum  # RDATA is never touched
    assert cache.get(_key(query), T0 + lifetime - 0.01) is entry
    assert cache.get(_key(query), T0 + lifetime) is None


def test_nxdomain_after_cname_lives_for_the_cname_ttl_when_smaller() -> None:
    query = _query("alias.example.")
    response = _reply(
        query,
        answer=("alias.example. 30 CNAME gone.example.",),
        authority=(f"example. 3600 SOA {SOA.format(minimum=300)}",),
        rcode=dns.rcode.NXDOMAIN,
    )
    cache = Cache(10)
    entry = _store(cache, query, response)
    assert entry.negative is True
    assert entry.expires == T0 + 30
    stored = _parsed(entry)
    assert stored.rcode() == dns.rcode.NXDOMAIN
    assert stored.answer[0].ttl == 30
    assert stored.authority[0].ttl <= 300
    assert cache.get(_key(query), T0 + 29.99) is entry
    assert cache.get(_key(query), T0 + 30) is None


@pytest.mark.parametrize("rcode", [dns.rcode.NXDOMAIN, dns.rcode.NOERROR])
def test_negative_reply_without_soa_is_not_cached(rcode: int) -> None:
    query = _query("nope.example.")
    cache = Cache(10)
    _not_cached(cache, _reply(query, rcode=rcode))
    # An authority section without an SOA gives no negative TTL either.
    ns_only = _reply(query, authority=("example. 300 NS ns.example.",), rcode=rcode)
    _not_cached(cache, ns_only)


@pytest.mark.parametrize("rcode", [dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR])
def test_error_rcodes_are_not_cached_even_with_records(rcode: int) -> None:
    query = _query()
    response = _reply(
        query,
        answer=("www.example. 300 A 192.0.2.1",),
        authority=(f"example. 3600 SOA {SOA.format(minimum=300)}",),
        rcode=rcode,
    )
    _not_cached(Cache(10), response)


def test_truncated_reply_is_not_cached() -> None:
    response = _a(ttl=300)
    response.flags |= dns.flags.TC
    _not_cached(Cache(10), response)
    negative = _reply(
        _query(),
        authority=(f"example. 3600 SOA {SOA.format(minimum=300)}",),
        rcode=dns.rcode.NXDOMAIN,
    )
    negative.flags |= dns.flags.TC
    _not_cached(Cache(10), negative)


def test_capacity_zero_disables_caching() -> None:
    cache = Cache(0)
    _not_cached(cache, _a(ttl=300))
    assert cache.evictions == 0 and cache.stores == 0


def _sized_reply(size: int) -> bytes:
    """A cacheable reply (OPT stripped) of exactly `size` bytes: TXT padding in the answer."""
    query = _query("big.example.", "TXT")

    def build(strings: list[int]) -> bytes:
        rdata = " ".join(f'"{"x" * n}"' for n in strings)
        wire = _reply(query, answer=(f"big.example. 300 TXT {rdata}",)).to_wire(max_size=65535)
        data, _info = strip_opt(wire, analyze_reply(wire))
        return data

    # Each full character-string adds 256 bytes; the last one takes the remainder.
    strings = [255] * ((size - len(build([0]))) // 256)
    base = len(build([*strings, 0]))
    data = build([*strings, size - base])
    assert len(data) == size
    return data


def test_reply_larger_than_max_cached_reply_is_not_cached() -> None:
    key = _key(_query("big.example.", "TXT"))
    cache = Cache(10)
    at_limit = _sized_reply(MAX_CACHED_REPLY)
    entry = cache.put(key, at_limit, analyze_reply(at_limit), T0)
    assert entry is not None and len(entry.rendered) == MAX_CACHED_REPLY
    cache = Cache(10)
    over = _sized_reply(MAX_CACHED_REPLY + 1)
    assert cache.put(key, over, analyze_reply(over), T0) is None
    assert len(cache) == 0 and cache.not_cacheable == 1


# --- Counters ----------------------------------------------------------------------------------


def test_get_with_count_miss_false_does_not_count_a_miss() -> None:
    cache = Cache(10)
    key = _key(_query())
    assert cache.get(key, T0, count_miss=False) is None
    assert cache.misses == 0
    assert cache.get(key, T0) is None
    assert cache.misses == 1
    _put(cache, _a(ttl=10))
    assert cache.get(key, T0 + 10, count_miss=False) is None  # expired: still not a miss
    assert cache.misses == 1 and cache.expired == 1
    assert cache.hits == 0


def test_negative_hits_are_counted_beside_hits() -> None:
    cache = Cache(10)
    positive = _query("yes.example.")
    negative = _query("no.example.")
    _store(cache, positive, _reply(positive, answer=("yes.example. 300 A 192.0.2.1",)))
    soa = f"example. 3600 SOA {SOA.format(minimum=300)}"
    _store(cache, negative, _reply(negative, authority=(soa,), rcode=dns.rcode.NXDOMAIN))
    for _ in range(3):
        assert cache.get(_key(negative), T0 + 1) is not None
    assert cache.get(_key(positive), T0 + 1) is not None
    assert cache.hits == 4
    assert cache.negative_hits == 3
    assert cache.misses == 0 and cache.stores == 2


# --- Shards: large caches are split so no dict grows big enough to stall serving ------------


def test_shard_count_keeps_each_shard_small() -> None:
    assert [shard_count(n) for n in (0, 1, 100, 8192)] == [1, 1, 1, 1]
    assert shard_count(8193) == 4  # 2,049 each: the first power of two at 4,096 or fewer
    assert shard_count(10000) == 4
    assert shard_count(200000) == 64  # 3,125 each
    assert shard_count(10**9) == 256  # capped
    for capacity in (8193, 10000, 16384, 16385, 200000, 1 << 20):
        count = shard_count(capacity)
        assert count & (count - 1) == 0 and -(-capacity // count) <= 4096


def _numbered(cache: Cache, count: int, now: float = T0) -> list[bytes]:
    """Store `count` distinct one-answer replies quickly (one dnspython reply, names patched
    in place: same length); return their keys in the order stored."""
    base_query = _query("n00000.example.")
    wire = bytearray(_a(name="n00000.example.").to_wire())
    key = bytearray(_key(base_query))
    keys = []
    for i in range(count):
        label = f"n{i:05d}".encode()
        wire[13:19] = label  # QNAME's first label (after its length octet at 12)
        key[1:7] = label
        keys.append(bytes(key))
        assert _put_wire(cache, keys[-1], bytes(wire), now) is not None
    return keys


def test_a_sharded_cache_holds_exactly_its_capacity_and_keeps_the_recent_entries() -> None:
    cache = Cache(10000)
    assert cache.shards == 4
    keys = _numbered(cache, 15000)
    assert len(cache) == 10000  # every shard is full and none went over its share
    assert cache.evictions == 5000
    assert len(set(cache.keys())) == 10000
    # Each shard evicts its own least recently used: the newest entries are all still there.
    for key in keys[-1000:]:
        assert cache.get(key, T0 + 1) is not None
    # And the oldest are all gone (each shard saw well over its 2,500 stores).
    assert all(cache.get(key, T0 + 1) is None for key in keys[:500])


def test_a_sharded_cache_serves_counts_and_expires_like_one_lru() -> None:
    cache = Cache(9000)
    assert cache.shards == 4
    keys = _numbered(cache, 600)
    assert len(cache) == 600 and cache.evictions == 0
    for key in keys[::3]:
        entry = cache.get(key, T0 + 10)
        assert entry is not None and entry.key == key
    assert cache.hit_counts() == {(1, 0, False): 200}  # summed over every shard
    # TTL 300: everything has expired at T0 + 300; nothing is served, each miss is counted.
    assert all(cache.get(key, T0 + 300) is None for key in keys)
    assert cache.expired == 600 and len(cache) == 0
