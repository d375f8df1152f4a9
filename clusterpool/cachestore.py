"""The client-side cache's entries and indexes (I/O-free): what a cached read may return, and
what each invalidation, link break or slot move drops.

Both clients' drivers use one `CacheStore`. A miss is cached only through a `Ticket` taken
before the read was sent: an invalidation of the key, or any bulk flush, while the read is
in flight voids it, so a reply that may already be stale is never stored (the
read/invalidate race). Taking a ticket costs no lock and needs no release. Changes take one lock; a hit reads the entry table without it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .slots import encode_key, key_slot
from .topology import Topology

MISS: Any = object()  # what `get` returns when nothing usable is cached

_ENTRY_OVERHEAD = 200  # bytes an entry costs beyond its reply's payload (dict slots, tuples, indexes)
_ITEM_OVERHEAD = 40  # per element of a list reply, per argument of the cache key


class FlushReason:
    """Why everything from a node, some slots, or the whole cache was dropped (stats keys)."""

    LINK_BROKEN = "link_broken"  # the node's invalidation connection broke: its pushes may be lost
    SERVER_FLUSH = "server_flush"  # the server said every key is invalid (FLUSHALL/FLUSHDB)
    SLOT_MOVED = "slot_moved"  # a slot's owner changed (MOVED, migration, failover, new map)
    NODE_GONE = "node_gone"  # the node left the map
    REPLICA_BEHIND = "replica_behind"  # a replica's link to its primary broke, or it lags past max_replica_lag
    USER = "user"  # client.cache_flush()
    OWN_WRITE = "own_write"  # this client sent a keyless write (FLUSHALL, a script without keys)


# A read in flight, taken just before it is sent (no lock): (bulk-flush count, invalidation count,
# cache key, Redis key, slot) -- for an MGET, lists of cache keys and Redis keys. `finish` stores
# the reply only if no bulk flush happened since and no invalidation since named its keys.
Ticket = tuple[int, int, Any, Any, int]
_RECENT = 1024  # invalidated keys remembered for tickets in flight; a ticket further behind stores nothing


# An entry is a plain tuple (the cheapest thing to build on every miss):
# (reply, size, Redis key, slot, node, expires (monotonic s, 0.0: no TTL), reply is a container)
Entry = tuple[Any, int, bytes, int, str, float, bool]
_VALUE: Final = 0
_SIZE: Final = 1
_RKEY: Final = 2
_SLOT: Final = 3
_NODE: Final = 4
_EXPIRES: Final = 5
_MUTABLE_REPLY: Final = 6


@dataclass(frozen=True, slots=True)
class CacheStats:
    """The cache at one moment: counters since the client started, and what it holds now."""

    hits: int
    misses: int
    stores: int
    evictions: int
    invalidations: int  # entries dropped by the server's invalidation messages
    expired: int  # entries dropped by the TTL
    flushes: dict[str, int] = field(default_factory=dict)  # bulk flushes by FlushReason
    entries: int = 0
    bytes: int = 0
    max_entries: int = 0
    max_bytes: int = 0


def reply_size(value: Any) -> int:
    """An estimate of the bytes one reply holds (payload plus per-element overhead)."""
    t = type(value)
    if t is bytes or t is str:
        return len(value) + _ITEM_OVERHEAD
    if t is list or t is tuple:
        return sum(reply_size(v) for v in value) + _ITEM_OVERHEAD
    if t is dict:
        return sum(reply_size(k) + reply_size(v) for k, v in value.items()) + _ITEM_OVERHEAD
    if t is set:
        return sum(reply_size(v) for v in value) + _ITEM_OVERHEAD
    return _ITEM_OVERHEAD


def copy_reply(value: Any) -> Any:
    """A copy of a cached container reply, so a caller changing its result changes nothing cached."""
    t = type(value)
    if t is list:
        return [copy_reply(v) for v in value]
    if t is dict:
        return {copy_reply(k): copy_reply(v) for k, v in value.items()}
    if t is set:
        return set(value)
    return value


_MUTABLE = (list, dict, set)


class CacheStore:
    """Bounded entries (count and bytes, LRU) indexed by Redis key and slot."""

    def __init__(self, max_entries: int, max_bytes: int, ttl: float | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.entries: OrderedDict[Any, Entry] = OrderedDict()  # cache key -> entry, oldest use first
        self._by_rkey: dict[bytes, Any] = {}  # Redis key -> its one cache key, or a set of them
        self._by_slot: dict[int, set[bytes]] = {}
        self._seq = 0  # keys invalidated so far
        self._recent: deque[bytes] = deque(maxlen=_RECENT)  # the last ones, oldest first
        self._lock = threading.Lock()
        self.epoch = 0  # bulk flushes so far: a ticket older than the last one is void
        self.bytes = 0
        self.hits = self.misses = self.stores = 0
        self.evictions = self.invalidations = self.expired = 0
        self.flushes: dict[str, int] = {}

    # ---------------------------------------------------------------- reads

    def get(self, ckey: Any, now: float = 0.0) -> Any:
        """The cached reply for `ckey` (a copy if it is a container), or MISS. `now`: monotonic
        seconds, needed only when the store has a TTL."""
        e = self.entries.get(ckey)
        if e is None:
            self.misses += 1
            return MISS
        if e[_EXPIRES] and now >= e[_EXPIRES]:
            self._expire(ckey, e)
            self.misses += 1
            return MISS
        self.hits += 1
        try:
            self.entries.move_to_end(ckey)
        except KeyError:  # dropped by another thread since the lookup: the value read is still the answer
            pass
        return copy_reply(e[_VALUE]) if e[_MUTABLE_REPLY] else e[_VALUE]

    def get_all(self, ckeys: Sequence[Any], now: float = 0.0) -> list[Any] | None:
        """Every key's cached reply (an MGET served per key), or None when any one is missing:
        one hit per key, or one miss for the call."""
        entries = self.entries
        found = [entries.get(k) for k in ckeys]
        if any(e is None or (e[_EXPIRES] and now >= e[_EXPIRES]) for e in found):
            self.misses += 1
            return None
        self.hits += len(found)
        return [copy_reply(e[_VALUE]) if e[_MUTABLE_REPLY] else e[_VALUE] for e in found]  # type: ignore[index]

    def _expire(self, ckey: Any, e: Entry) -> None:
        with self._lock:
            if self.entries.get(ckey) is e:
                self._drop(ckey, e)
                self.expired += 1

    # ---------------------------------------------------------------- misses

    def begin(self, ckey: Any = None, rkey: Any = b"", slot: int = 0) -> Ticket:
        """A ticket for a read of `rkey` about to be sent (before sending: see the module docstring)."""
        return (self.epoch, self._seq, ckey, rkey, slot)

    def _current(self, ticket: Ticket, rkeys: Iterable[bytes]) -> bool:
        """No bulk flush since the ticket, and no invalidation of these keys (under the lock)."""
        if ticket[0] != self.epoch:
            return False
        behind = self._seq - ticket[1]
        if not behind:
            return True
        if behind > _RECENT:
            return False
        recent = self._recent
        named = set(rkeys)
        return not any(recent[-i] in named for i in range(1, behind + 1))

    def finish(self, ticket: Ticket, items: Sequence[tuple[Any, bytes, Any]], slot: int, node: str,
               now: float = 0.0, tracked: bool = True) -> bool:
        """Store `items` ((cache key, Redis key, reply) each) of a read that began with `ticket`
        and was answered by `node`, if still current and read on a connection the node tracks
        for us (`tracked`). Returns whether it stored."""
        if not (tracked and items):
            return False
        with self._lock:
            if not self._current(ticket, [rkey for _, rkey, _ in items]):
                return False
            expires = now + self.ttl if self.ttl else 0.0
            for ckey, rkey, value in items:
                self._put(ckey, rkey, value, slot, node, expires)
            if len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
                self._evict()
            return True

    def finish_one(self, ticket: Ticket, node: str, value: Any, now: float = 0.0, tracked: bool = True) -> bool:
        """`finish` for a single-key read whose ticket carries its cache key (the common miss, kept short)."""
        if not tracked:
            return False
        with self._lock:
            if ticket[0] != self.epoch or (ticket[1] != self._seq and not self._current(ticket, (ticket[3],))):
                return False
            self._put(ticket[2], ticket[3], value, ticket[4], node, now + self.ttl if self.ttl else 0.0)
            if len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
                self._evict()
            return True

    def _put(self, ckey: Any, rkey: bytes, value: Any, slot: int, node: str, expires: float) -> None:
        entries = self.entries
        old = entries.get(ckey)
        if old is not None:
            self._drop(ckey, old)
        size = reply_size(value) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        entries[ckey] = (value, size, rkey, slot, node, expires, type(value) in _MUTABLE)
        self.bytes += size
        self.stores += 1
        by_rkey = self._by_rkey
        held = by_rkey.get(rkey)
        if held is None:
            by_rkey[rkey] = ckey
        elif type(held) is set:
            held.add(ckey)
        elif held != ckey:
            by_rkey[rkey] = {held, ckey}
        keys = self._by_slot.get(slot)
        if keys is None:
            self._by_slot[slot] = {rkey}
        else:
            keys.add(rkey)

    def _evict(self) -> None:
        entries = self.entries
        while entries and (len(entries) > self.max_entries or self.bytes > self.max_bytes):
            ckey, e = next(iter(entries.items()))
            self._drop(ckey, e)
            self.evictions += 1

    # ---------------------------------------------------------------- invalidation

    def invalidate(self, rkeys: Iterable[bytes]) -> int:
        """The server says these keys changed: drop their entries and void reads in flight."""
        dropped = 0
        with self._lock:
            for k in rkeys:
                self._seq += 1  # tickets taken before this one no longer store k
                self._recent.append(k)
                dropped += self._drop_rkey(k)
            self.invalidations += dropped
        return dropped

    def flush_node(self, node: str, reason: str) -> int:
        """Drop everything read from `node` (its invalidations can no longer be trusted). A scan:
        it happens when a link breaks, not per command."""
        with self._lock:
            doomed = [(ckey, e) for ckey, e in self.entries.items() if e[_NODE] == node]
            for ckey, e in doomed:
                self._drop(ckey, e)
            self._count_flush(reason)
            return len(doomed)

    def flush_slots(self, slots: Iterable[int], reason: str = FlushReason.SLOT_MOVED) -> int:
        """Drop every entry of these slots (their owner changed: it knows nothing of our reads)."""
        slots = list(slots)
        if not slots:
            return 0
        dropped = 0
        with self._lock:
            for s in slots:
                for rkey in list(self._by_slot.get(s, ())):
                    dropped += self._drop_rkey(rkey)
            self._count_flush(reason)
            return dropped

    def flush_all(self, reason: str) -> int:
        with self._lock:
            n = len(self.entries)
            self.entries.clear()
            self._by_rkey.clear()
            self._by_slot.clear()
            self.bytes = 0
            self._count_flush(reason)
            return n

    def _count_flush(self, reason: str) -> None:
        self.epoch += 1  # every read in flight may have been served by what was just flushed
        self.flushes[reason] = self.flushes.get(reason, 0) + 1

    def _drop_rkey(self, rkey: bytes) -> int:
        """Drop every entry of one Redis key (each command cached for it); how many."""
        held = self._by_rkey.get(rkey)
        if held is None:
            return 0
        ckeys = list(held) if type(held) is set else [held]
        for ckey in ckeys:
            self._drop(ckey, self.entries[ckey])
        return len(ckeys)

    def _drop(self, ckey: Any, e: Entry) -> None:
        del self.entries[ckey]
        self.bytes -= e[_SIZE]
        rkey = e[_RKEY]
        held = self._by_rkey.get(rkey)
        if type(held) is set:
            held.discard(ckey)
            if len(held) > 1:
                return
            if held:  # one cache key left: back to the plain form
                self._by_rkey[rkey] = next(iter(held))
                return
        del self._by_rkey[rkey]
        keys = self._by_slot.get(e[_SLOT])
        if keys is not None:
            keys.discard(rkey)
            if not keys:
                del self._by_slot[e[_SLOT]]

    # ---------------------------------------------------------------- visibility

    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, self.stores, self.evictions, self.invalidations, self.expired,
                          dict(self.flushes), len(self.entries), self.bytes, self.max_entries, self.max_bytes)


REPLICA_READS = "replica-read"  # the cache-key prefix of reads a view may send to replicas


def cache_key(namespace: str | None, args: Sequence[Any]) -> Any:
    """A read's cache key: its arguments as given, prefixed for views that read from replicas
    (so the primary-reading client never serves a replica's possibly older reply); None when an
    argument is unhashable (not cached)."""
    try:
        hash(args)
    except TypeError:
        return None
    return args if namespace is None else (namespace, args)


def mget_read(store: CacheStore, namespace: str | None, keys: Sequence[Any],
              now: float = 0.0) -> tuple[list[Any] | None, Ticket | None]:
    """An MGET through the cache, for both clients: (values, None) when every key has a cached
    GET; (None, ticket) for a miss whose keys share a slot (the ticket holds the cache keys, the
    Redis keys and the slot: each value is stored as its GET); (None, None) when it is not cached
    (an unhashable or unencodable key, keys in several slots)."""
    ckeys = [cache_key(namespace, ("GET", k)) for k in keys]
    if not ckeys or None in ckeys:
        return None, None
    values = store.get_all(ckeys, now)
    if values is not None:
        return values, None
    try:
        rkeys = tuple(encode_key(k) for k in keys)
    except TypeError:
        return None, None
    slot = key_slot(rkeys[0])
    if any(key_slot(k) != slot for k in rkeys[1:]):
        return None, None  # across slots: the router's (or the server's) error is the answer
    return None, store.begin(ckeys, rkeys, slot)


def forget_written(store: CacheStore, table: Any, args: Sequence[Any]) -> None:
    """After a command this client sent: if it may write, drop the entries of the keys it names
    (all entries when it writes without naming keys: FLUSHALL, FLUSHDB)."""
    if table is None:
        return
    info, argv = table.resolve(args)
    if info.readonly:
        return
    keys = info.keys(argv)
    if keys:
        store.invalidate([encode_key(k) for k in keys])
    elif info.write:
        store.flush_all(FlushReason.OWN_WRITE)


def slots_reassigned(old: Topology | None, new: Topology) -> list[int]:
    """Slots whose set of serving nodes differs between two maps: cached entries of these slots
    may have come from a node that no longer serves (or replicates) them."""
    if old is None:
        return []
    changed: list[int] = []
    same: dict[tuple[int, int], bool] = {}
    for slot, (a, b) in enumerate(zip(old.slot_table, new.slot_table)):
        if a is b:
            continue
        pair = (id(a), id(b))
        verdict = same.get(pair)
        if verdict is None:
            verdict = same[pair] = _serving(a) == _serving(b)
        if not verdict:
            changed.append(slot)
    return changed


def _serving(shard: Any) -> tuple[Any, frozenset[str]]:
    if shard is None:
        return None, frozenset()
    primary = shard.primary.name if shard.primary is not None else None
    return primary, frozenset(n.name for n in shard.replicas)
