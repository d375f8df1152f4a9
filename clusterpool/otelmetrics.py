"""The OpenTelemetry instruments of clusterpool.otel, made once per meter.

Why once: the SDK keeps only the first callback registered under an observable
instrument's name, so two instrumented clients on one meter share one set of instruments
and the observable ones read every client registered with them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

if TYPE_CHECKING:
    from .cachestore import CacheStats

# the semantic conventions' advice for db.client.operation.duration (seconds)
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)


class Counted(Protocol):
    """An instrumented client, as the observable instruments read it."""

    def connection_counts(self) -> Iterable[tuple[str, int, int, int]]:
        """(node, used, idle, pending) for each node the client has connections to."""
        ...

    def cache_stats(self) -> CacheStats | None:
        """The client's client-side cache counters (None: it has no cache)."""
        ...


# the client-side cache's counters: (instrument suffix, CacheStats field, description)
_CACHE_COUNTERS = (
    ("hits", "hits", "Reads served from the client-side cache."),
    ("misses", "misses", "Cacheable reads not found in the client-side cache."),
    ("stores", "stores", "Replies stored in the client-side cache."),
    ("evictions", "evictions", "Entries evicted by the entry or byte bound."),
    ("invalidations", "invalidations", "Entries dropped by the server's invalidation messages."),
    ("expirations", "expired", "Entries dropped by the TTL."),
)


class Instruments:
    """One meter's instruments, made once per meter: the SDK keeps only the first callback
    registered under a name, so the observable ones read every instrumented client."""

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            "db.client.operation.duration", unit="s", description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
        self.redirections = meter.create_counter(
            "clusterpool.client.redirections", unit="{redirection}", description="MOVED and ASK replies followed.")
        self.retries = meter.create_counter(
            "clusterpool.client.retries", unit="{retry}",
            description="Attempts that failed and were retried or given up (TRYAGAIN, CLUSTERDOWN, LOADING, broken connections, timeouts).")
        self.timeouts = meter.create_counter(
            "clusterpool.client.timeouts", unit="{timeout}", description="Attempts that timed out.")
        self.refreshes = meter.create_counter(
            "clusterpool.client.topology.refreshes", unit="{refresh}", description="New slot maps adopted.")
        self.failovers = meter.create_counter(
            "clusterpool.client.failovers", unit="{failover}", description="Replicas seen promoted to primary.")
        self._clients: weakref.WeakSet[Counted] = weakref.WeakSet()
        self._lock = threading.Lock()
        meter.create_observable_up_down_counter(
            "db.client.connection.count", callbacks=[self._connection_count], unit="{connection}",
            description="Connections per node and state (idle or used).")
        meter.create_observable_up_down_counter(
            "db.client.connection.pending_requests", callbacks=[self._pending], unit="{request}",
            description="Requests written or queued on a node's shared connections and waiting for their reply (asyncio).")
        for suffix, attr, doc in _CACHE_COUNTERS:
            meter.create_observable_counter(f"clusterpool.client.cache.{suffix}", callbacks=[self._cache_sum(attr)],
                                            unit="{" + suffix.rstrip("s") + "}", description=doc)
        meter.create_observable_counter(
            "clusterpool.client.cache.flushes", callbacks=[self._cache_flushes], unit="{flush}",
            description="Bulk drops of client-side cache entries, by reason (link_broken, slot_moved ...).")
        meter.create_observable_up_down_counter(
            "clusterpool.client.cache.entries", callbacks=[self._cache_sum("entries")], unit="{entry}",
            description="Entries in the client-side cache.")
        meter.create_observable_up_down_counter(
            "clusterpool.client.cache.size", callbacks=[self._cache_sum("bytes")], unit="By",
            description="Estimated bytes the client-side cache holds.")

    def add(self, inst: Counted) -> None:
        with self._lock:
            self._clients.add(inst)

    def discard(self, inst: Counted) -> None:
        with self._lock:
            self._clients.discard(inst)

    def _counts(self) -> list[tuple[str, int, int, int]]:
        with self._lock:
            clients = list(self._clients)
        out: list[tuple[str, int, int, int]] = []
        for inst in clients:
            try:
                out.extend(inst.connection_counts())
            except Exception:  # a closed client, a map being swapped: skip it this round
                continue
        return out

    def _caches(self) -> list[CacheStats]:
        with self._lock:
            clients = list(self._clients)
        out: list[CacheStats] = []
        for inst in clients:
            try:
                found = inst.cache_stats()
            except Exception:  # a closed client: skip it this round
                continue
            if found is not None:
                out.append(found)
        return out

    def _cache_sum(self, attr: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        """A callback observing `attr` of the cache stats, summed over the instrumented clients."""
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            caches = self._caches()
            if caches:
                yield Observation(sum(getattr(c, attr) for c in caches))
        return observe

    def _cache_flushes(self, options: CallbackOptions) -> Iterable[Observation]:
        by_reason: dict[str, int] = {}
        for c in self._caches():
            for reason, n in c.flushes.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
        for reason, n in by_reason.items():
            yield Observation(n, {"clusterpool.cache.flush.reason": reason})

    def _connection_count(self, options: CallbackOptions) -> Iterable[Observation]:
        for node, used, idle, _ in self._counts():
            yield Observation(used, {"db.client.connection.pool.name": node, "db.client.connection.state": "used"})
            yield Observation(idle, {"db.client.connection.pool.name": node, "db.client.connection.state": "idle"})

    def _pending(self, options: CallbackOptions) -> Iterable[Observation]:
        for node, _, _, pending in self._counts():
            yield Observation(pending, {"db.client.connection.pool.name": node})


_by_meter: weakref.WeakKeyDictionary[Meter, Instruments] = weakref.WeakKeyDictionary()
_by_meter_lock = threading.Lock()


def instruments_for(meter: Meter) -> Instruments:
    """The instruments of `meter`, made on first use."""
    with _by_meter_lock:
        found = _by_meter.get(meter)
        if found is None:
            found = _by_meter[meter] = Instruments(meter)
        return found


