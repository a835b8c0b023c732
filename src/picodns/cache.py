"""Resolver, part 1: the reply cache. LRU bounded by entry count, TTL-honouring, negative entries.

Rules kept here:
- Time is an argument: every call takes `now` (seconds, any monotonic origin). No clock, no I/O.
- An entry keeps the reply bytes (OPT removed, TTLs already clamped) and the TTL offsets computed
  once when it was stored, so serving is a copy plus patches, never a parse.
- TTLs change once a second: the aged rendering is kept and reused until the second ticks.
- Positive entries live for the smallest answer TTL; NXDOMAIN/NODATA for min(SOA TTL, SOA MINIMUM)
  (RFC 2308 5), with the SOA's TTL in the stored reply set to that value. A negative reply without
  an SOA is not cached (RFC 2308 5: without it there is no TTL to honour).
- Expired entries are never served; they are removed when met and swept from the LRU end
  (every 8th store looks at up to 16 entries there).
- One event loop owns the cache: OrderedDicts, no locks. A large cache is split into LRU shards
  by key hash, so no single dict is big enough for its growth to stall serving.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from picodns.errors import NOERROR, NXDOMAIN
from picodns.message import ReplyInfo, key_slot, pack_ttls, render_ttls
from picodns.wire import FLAG_TC, u16, write_opt

__all__ = ["MAX_CACHED_REPLY", "OUR_PAYLOAD", "Cache", "Entry", "shard_count"]

MAX_CACHED_REPLY: Final = 16384  # larger replies are forwarded but not kept: bounds memory
OUR_PAYLOAD: Final = 1232  # the EDNS payload size we advertise to clients (DNS Flag Day 2020)
_SWEEP: Final = 16  # expired entries reclaimed from the LRU end per sweep...
_SWEEP_EVERY: Final = 8  # ...made every 8th store: 2 per store, without a look per store
_SHARD_MIN: Final = 8192  # caches up to this many entries are one LRU
_SHARD_SIZE: Final = 4096  # larger ones are split so no shard holds more than this...
_SHARDS_MAX: Final = 256  # ...up to this many shards (key_slot's range)
_OPTS: Final = (write_opt(OUR_PAYLOAD, False), write_opt(OUR_PAYLOAD, True))  # by client's DO


class Entry:
    """One cached reply and its precomputed TTL offsets."""

    __slots__ = (
        "canonical",
        "expires",
        "hits",
        "key",
        "negative",
        "opt",
        "qtype",
        "rcode",
        "render_until",
        "rendered_at",
        "size",
        "size_opt",
        "stored",
        "tail",
        "tail_opt",
        "ttl_table",
    )

    def __init__(
        self,
        template: bytes,
        ttl_table: bytes,
        stored: float,
        lifetime: int,
        do: bool,
        negative: bool,
        qtype: int = 0,
        rcode: int = 0,
        canonical: bool | None = None,
    ) -> None:
        # `template`: the reply without OPT, TTLs as stored (clamped). Only `tail` (it without
        # the ID) and `tail_opt` are kept: the TTLs are re-rendered from `ttl_table`, and a client
        # gets its own ID. Two copies of the reply per entry.
        self.ttl_table = ttl_table
        """(offset, TTL as stored) of every TTL, as :func:`~picodns.message.pack_ttls` packs
        them: 6 bytes each instead of two lists of int objects (~160 bytes less per entry)."""
        self.stored = stored
        self.expires = stored + lifetime
        self.negative = negative
        self.qtype = qtype
        self.rcode = rcode
        self.key = b""
        """The cache key it is stored under (the very object: set by :meth:`Cache.put`)."""
        self.hits = 0
        """Times served from the cache. Counted here, one integer add on the hot path; the
        cache's hit totals by qtype and rcode are summed from entries when scraped."""
        self.opt = _OPTS[do]
        """Our OPT record for this client's DO bit."""
        self.rendered_at = 0  # rendered for the second it was stored in: TTLs as stored
        self.render_until = stored + 1  # `tail` and `tail_opt` are current until this time
        if canonical is None:
            qname = template[12 : template.find(0, 12) + 1]
            canonical = qname == qname.lower()
        self.canonical = canonical
        """The stored QNAME is lower case: a client spelling it so needs no patch."""
        self.size = len(template)
        self.size_opt = self.size + len(self.opt)
        self.tail = template[2:]
        """The reply without its ID, TTLs aged to `rendered_at` seconds."""
        ar = ((template[10] << 8) | template[11]) + 1
        self.tail_opt = b"".join((template[2:10], u16(ar), template[12:], self.opt))

    @property
    def rendered(self) -> bytes:
        """The current reply without OPT, with ID 0 (for tests and introspection)."""
        return b"\x00\x00" + self.tail

    @property
    def rendered_opt(self) -> bytes:
        """The current reply with our OPT, with ID 0 (for tests and introspection)."""
        return b"\x00\x00" + self.tail_opt

    @classmethod
    def transient(cls, reply: bytes, do: bool, now: float) -> Entry:
        """Return a rendered entry for a reply that is not cached (served once, as it is)."""
        return cls(reply, b"", now, 0, do, False, rcode=reply[3] & 0xF)

    def render(self, now: float) -> None:
        """Refresh `tail` (no OPT) and `tail_opt` (our OPT appended) for `now`'s second."""
        elapsed = int(now - self.stored)
        self.render_until = self.stored + elapsed + 1
        if elapsed == self.rendered_at:
            return
        out = render_ttls(self.tail, self.ttl_table, elapsed, base=2)  # no ID in `tail`
        self.tail = bytes(out)
        ar = ((out[8] << 8) | out[9]) + 1
        out[8] = ar >> 8
        out[9] = ar & 0xFF
        out += self.opt
        self.tail_opt = bytes(out)
        self.rendered_at = elapsed


def shard_count(capacity: int) -> int:
    """How many LRU shards a cache of `capacity` entries is split into: 1 up to 8,192
    entries, else the power of two that keeps each shard at 4,096 entries or fewer (at most
    256). Growing a dict rehashes all of it at once: an OrderedDict of 87,381 entries took
    16.7 ms to grow in a busy server, a shard of 4,096 takes well under one."""
    if capacity <= _SHARD_MIN:
        return 1
    count = 2
    while capacity > count * _SHARD_SIZE and count < _SHARDS_MAX:
        count *= 2
    return count


class Cache:
    """LRU reply cache keyed by the normalised question key (see :mod:`picodns.message`).

    Large caches are split into shards by the key's hash, each an LRU of its own share of the
    capacity (as Unbound's slabs): the least recently used entry of the shard a new entry
    lands in is the one evicted. The total never exceeds `capacity`."""

    def __init__(self, capacity: int, min_ttl: int = 0, max_ttl: int = 86400) -> None:
        self.capacity = capacity
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        count = shard_count(capacity)
        self._shards: list[OrderedDict[bytes, Entry]] = [OrderedDict() for _ in range(count)]
        self._mask = count - 1
        share, extra = divmod(max(capacity, 0), count)
        self._limits = [share + (i < extra) for i in range(count)]  # they add up to capacity
        # Counters, read by metrics. Plain ints: one event loop owns the cache.
        self.misses = 0
        self.evictions = 0
        self.expired = 0
        self.stores = 0
        self.not_cacheable = 0
        self._retired: dict[tuple[int, int, bool], int] = {}  # hits of entries now gone

    def __len__(self) -> int:
        return sum(len(shard) for shard in self._shards)

    @property
    def shards(self) -> int:
        """How many LRU shards the entries are split into (see :func:`shard_count`)."""
        return len(self._shards)

    def get(self, key: bytes, now: float, count_miss: bool = True, slot: int = -1) -> Entry | None:
        """Return the live entry for `key`, rendered for `now`, or None (a miss).

        An expired entry is removed and never returned. `count_miss` False is for a second look
        at a question whose miss was already counted. `slot` is the key's
        :func:`~picodns.message.key_slot` when the caller has it (a scan carries it).
        """
        data = self._shards[(slot if slot >= 0 else key_slot(key)) & self._mask]
        entry = data.get(key)
        if entry is None:
            self.misses += count_miss
            return None
        if now >= entry.expires:
            del data[key]
            self._retire(entry)
            self.expired += 1
            self.misses += count_miss
            return None
        data.move_to_end(key)
        entry.hits += 1
        if now >= entry.render_until:
            entry.render(now)
        return entry

    def lifetime(self, info: ReplyInfo) -> int:
        """Return how long a reply may be cached (after clamping), or 0 when it may not be.

        Cacheable: NOERROR with answers (smallest answer TTL), and NXDOMAIN or NODATA with an
        SOA in the authority section (RFC 2308). Everything else, and TC=1 replies, is not.
        """
        if info.flags & FLAG_TC:
            return 0
        if info.rcode == NOERROR and info.ancount:
            ttl = info.min_ttl
            if info.neg_ttl is not None and ttl is not None:  # CNAME chain ending in NODATA
                ttl = min(ttl, info.neg_ttl)
        elif info.rcode in (NOERROR, NXDOMAIN):
            # RFC 2308 5: negative TTL from the SOA; a CNAME chain ending in NXDOMAIN is
            # bounded by its answers as well.
            if info.neg_ttl is None:
                return 0
            ttl = info.neg_ttl if info.min_ttl is None else min(info.neg_ttl, info.min_ttl)
        else:
            return 0
        assert ttl is not None
        return min(max(ttl, self.min_ttl), self.max_ttl)

    def put(
        self, key: bytes, reply: bytes, info: ReplyInfo, now: float, slot: int = -1
    ) -> Entry | None:
        """Store `reply` (OPT already removed) under `key`; return the entry, or None if the
        reply is not cacheable, too large, or caching is off. `slot` as for :meth:`get`."""
        if self.capacity <= 0 or len(reply) > MAX_CACHED_REPLY:
            self.not_cacheable += 1
            return None
        lifetime = self.lifetime(info)
        if lifetime <= 0:
            self.not_cacheable += 1
            return None
        lo, hi = self.min_ttl, self.max_ttl
        ttls = info.ttls
        for ttl in ttls:  # a loop, not min() and max(): compiled, it is a few C comparisons
            if ttl < lo or ttl > hi:
                ttls = [min(max(t, lo), hi) for t in ttls]
                break
        negative = info.rcode == NXDOMAIN or info.ancount == 0
        if info.neg_ttl is not None and info.soa_index >= 0 and ttls[info.soa_index] != lifetime:
            ttls = list(ttls)
            ttls[info.soa_index] = lifetime  # the SOA shows how long the denial holds
        table = pack_ttls(info.ttl_offsets, ttls)
        # Rewritten only when a TTL changed; the wire TTLs of the rest already read as `ttls`
        # (a top-bit TTL reads as 0 and is rewritten so: it differs from the wire value).
        template = (
            reply if ttls is info.ttls and not info.zeroed else bytes(render_ttls(reply, table, 0))
        )
        do = bool(key[-1] & 2)
        qtype = (key[-5] << 8) | key[-4]
        # The key holds QNAME as folded (lower case): the reply spells it so, or it does not.
        canonical = template[12 : len(key) + 7] == key[:-5]
        entry = Entry(template, table, now, lifetime, do, negative, qtype, info.rcode, canonical)
        entry.key = key
        index = (slot if slot >= 0 else key_slot(key)) & self._mask
        data = self._shards[index]
        old = data.get(key)
        if old is not None:
            self._retire(old)
        data[key] = entry
        data.move_to_end(key)
        self.stores += 1
        if not self.stores % _SWEEP_EVERY:
            self._sweep(data, now)
        limit = self._limits[index]
        while len(data) > limit:
            self._retire(data.popitem(last=False)[1])
            self.evictions += 1
        return entry

    def _sweep(self, data: OrderedDict[bytes, Entry], now: float) -> None:
        for _ in range(_SWEEP):
            if not data:
                return
            key = next(iter(data))
            if data[key].expires > now:
                return
            self._retire(data.pop(key))
            self.expired += 1

    def _retire(self, entry: Entry) -> None:
        if entry.hits:
            bucket = (entry.qtype, entry.rcode, entry.negative)
            self._retired[bucket] = self._retired.get(bucket, 0) + entry.hits

    def hit_counts(self) -> dict[tuple[int, int, bool], int]:
        """Hits so far by (qtype, rcode, negative): entries gone plus entries live. O(entries),
        for scrapes, not for the hot path."""
        counts = dict(self._retired)
        for entry in self._entries():
            if entry.hits:
                bucket = (entry.qtype, entry.rcode, entry.negative)
                counts[bucket] = counts.get(bucket, 0) + entry.hits
        return counts

    @property
    def hits(self) -> int:
        """Queries answered from the cache."""
        return sum(self.hit_counts().values())

    @property
    def negative_hits(self) -> int:
        """Queries answered from a negative (NXDOMAIN/NODATA) entry."""
        return sum(n for (_t, _r, negative), n in self.hit_counts().items() if negative)

    def keys(self) -> list[bytes]:
        """Keys from least to most recently used, shard by shard (for tests and introspection:
        with one shard, the cache's LRU order)."""
        return [key for shard in self._shards for key in shard]

    def _entries(self) -> list[Entry]:
        return [entry for shard in self._shards for entry in shard.values()]
