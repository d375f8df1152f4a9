"""The client-side cache's entries and indexes (I/O-free): what a cached read may return, and
what each invalidation, link break or slot move drops.

Both clients' drivers use one `CacheStore`. A miss is cached only through a `Ticket` taken
before the read was sent: an invalidation of the key, or any bulk flush, while the read is
in flight voids the ticket, so a reply that may already be stale is never stored (the
read/invalidate race). Changes take one lock; a hit reads the entry table without it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    USER = "user"  # client.cache_flush()


@dataclass(slots=True, eq=False)
class Ticket:
    """One cacheable read in flight: cached on completion only while `valid`."""

    rkeys: tuple[bytes, ...]
    epoch: int  # the store's bulk-flush count when the read began
    valid: bool = True


@dataclass(slots=True, eq=False)
class Entry:
    value: Any
    size: int
    rkey: bytes
    slot: int
    node: str
    expires: float  # monotonic seconds; 0.0: no TTL
    mutable: bool  # a list reply: handed out as a copy


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


def _is_mutable(value: Any) -> bool:
    return type(value) in (list, dict, set)


class CacheStore:
    """Bounded entries (count and bytes, LRU) with indexes by Redis key, slot and node."""

    def __init__(self, max_entries: int, max_bytes: int, ttl: float | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.entries: OrderedDict[Any, Entry] = OrderedDict()  # cache key -> entry, oldest use first
        self._by_rkey: dict[bytes, set[Any]] = {}
        self._by_slot: dict[int, set[bytes]] = {}
        self._by_node: dict[str, set[bytes]] = {}
        self._pending: dict[bytes, list[Ticket]] = {}
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
        if e.expires and now >= e.expires:
            self._expire(ckey, e)
            self.misses += 1
            return MISS
        self.hits += 1
        try:
            self.entries.move_to_end(ckey)
        except KeyError:  # dropped by another thread since the lookup: the value read is still the answer
            pass
        return copy_reply(e.value) if e.mutable else e.value

    def _expire(self, ckey: Any, e: Entry) -> None:
        with self._lock:
            if self.entries.get(ckey) is e:
                self._drop(ckey, e)
                self.expired += 1

    # ---------------------------------------------------------------- misses

    def begin(self, rkeys: tuple[bytes, ...]) -> Ticket:
        """Register a read of `rkeys` about to be sent (before sending: see the module docstring)."""
        t = Ticket(rkeys, self.epoch)
        with self._lock:
            pending = self._pending
            for k in rkeys:
                waiting = pending.get(k)
                if waiting is None:
                    pending[k] = [t]
                else:
                    waiting.append(t)
        return t

    def finish(self, ticket: Ticket, items: Sequence[tuple[Any, bytes, Any]], slot: int, node: str,
               now: float = 0.0, tracked: bool = True) -> bool:
        """End a read; store `items` ((cache key, Redis key, reply) each) as from `node` if the
        ticket is still valid and the reply was read on a connection the node tracks for us
        (`tracked`). Returns whether it stored. Call it on failure too (with no items)."""
        with self._lock:
            self._release(ticket)
            if not (tracked and items and ticket.valid and ticket.epoch == self.epoch):
                return False
            expires = now + self.ttl if self.ttl else 0.0
            for ckey, rkey, value in items:
                old = self.entries.get(ckey)
                if old is not None:
                    self._drop(ckey, old)
                size = reply_size(value) + _ENTRY_OVERHEAD + _ITEM_OVERHEAD * len(ckey)
                if size > self.max_bytes:
                    continue
                self.entries[ckey] = Entry(value, size, rkey, slot, node, expires, _is_mutable(value))
                self.bytes += size
                self._by_rkey.setdefault(rkey, set()).add(ckey)
                self._by_slot.setdefault(slot, set()).add(rkey)
                self._by_node.setdefault(node, set()).add(rkey)
                self.stores += 1
            self._evict()
            return True

    def abandon(self, ticket: Ticket) -> None:
        """End a read that failed: nothing is stored."""
        with self._lock:
            self._release(ticket)

    def _release(self, ticket: Ticket) -> None:
        pending = self._pending
        for k in ticket.rkeys:
            waiting = pending.get(k)
            if waiting is None:
                continue
            try:
                waiting.remove(ticket)
            except ValueError:
                continue
            if not waiting:
                del pending[k]

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
                for t in self._pending.get(k, ()):
                    t.valid = False
                for ckey in list(self._by_rkey.get(k, ())):
                    self._drop(ckey, self.entries[ckey])
                    dropped += 1
            self.invalidations += dropped
        return dropped

    def flush_node(self, node: str, reason: str) -> int:
        """Drop everything read from `node` (its invalidations can no longer be trusted)."""
        with self._lock:
            return self._flush_rkeys(self._by_node.get(node, set()), reason, lambda e: e.node == node)

    def flush_slots(self, slots: Iterable[int], reason: str = FlushReason.SLOT_MOVED) -> int:
        """Drop every entry of these slots (their owner changed: it knows nothing of our reads)."""
        with self._lock:
            rkeys: set[bytes] = set()
            for s in slots:
                rkeys |= self._by_slot.get(s, set())
            return self._flush_rkeys(rkeys, reason, lambda e: True)

    def flush_all(self, reason: str) -> int:
        with self._lock:
            n = len(self.entries)
            self.entries.clear()
            self._by_rkey.clear()
            self._by_slot.clear()
            self._by_node.clear()
            self.bytes = 0
            self._count_flush(reason)
            return n

    def _flush_rkeys(self, rkeys: set[bytes], reason: str, select: Any) -> int:
        dropped = 0
        for k in list(rkeys):
            for ckey in list(self._by_rkey.get(k, ())):
                e = self.entries[ckey]
                if select(e):
                    self._drop(ckey, e)
                    dropped += 1
        self._count_flush(reason)
        return dropped

    def _count_flush(self, reason: str) -> None:
        self.epoch += 1  # every read in flight may have been served by what was just flushed
        self.flushes[reason] = self.flushes.get(reason, 0) + 1

    def _drop(self, ckey: Any, e: Entry) -> None:
        del self.entries[ckey]
        self.bytes -= e.size
        holders = self._by_rkey.get(e.rkey)
        if holders is not None:
            holders.discard(ckey)
            if holders:
                return  # another command's entry of this key keeps its slot and node index
            del self._by_rkey[e.rkey]
        _discard(self._by_slot, e.slot, e.rkey)
        _discard(self._by_node, e.node, e.rkey)

    # ---------------------------------------------------------------- visibility

    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, self.stores, self.evictions, self.invalidations, self.expired,
                          dict(self.flushes), len(self.entries), self.bytes, self.max_entries, self.max_bytes)


def _discard(index: dict[Any, set[bytes]], at: Any, rkey: bytes) -> None:
    keys = index.get(at)
    if keys is not None:
        keys.discard(rkey)
        if not keys:
            del index[at]


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
