"""The OpenTelemetry instruments of clusterpool.otel, made once per meter.

Why once: the SDK keeps only the first callback registered under an observable
instrument's name, so two instrumented clients on one meter share one set of instruments
and the observable ones read every client registered with them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

from opentelemetry.metrics import CallbackOptions, Meter, Observation

if TYPE_CHECKING:
    from .cachestore import CacheStats

T = TypeVar("T")

# the semantic conventions' advice for db.client.operation.duration (seconds)
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)


class Counted(Protocol):
    """An instrumented client, as the observable instruments read it."""

    def connection_counts(self) -> Iterable[tuple[str, int, int, int]]:
        """(node, used, idle, pending) for each node the client has connections to."""
        ...

    def hedge_counts(self) -> Iterable[tuple[str, int]]:
        """(outcome, count) of the client's hedged reads: sent, won, suppressed."""
        ...

    def cache_stats(self) -> CacheStats | None:
        """The client-side cache's counters (None: no cache)."""
        ...


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
        meter.create_observable_counter(
            "clusterpool.client.hedges", callbacks=[self._hedges], unit="{hedge}",
            description="Hedged reads by outcome: sent (a late read sent again to another node), "
                        "won (its reply came first), suppressed (over the budget).")
        for make, name, callback, unit, description in (
            (meter.create_observable_counter, "requests", self._cache_requests, "{request}",
             "Cacheable reads, by result (hit: served locally; miss: sent to the server)."),
            (meter.create_observable_counter, "drops", self._cache_drops, "{entry}",
             "Cached entries dropped, by reason (eviction, invalidation, expiry) and bulk flushes by reason."),
            (meter.create_observable_up_down_counter, "size", self._cache_size, "By",
             "Bytes held by the client-side cache (estimate)."),
            (meter.create_observable_up_down_counter, "entries", self._cache_entries, "{entry}",
             "Entries held by the client-side cache."),
        ):
            make(f"clusterpool.client.cache.{name}", callbacks=[callback], unit=unit,
                 description=description)

    def _caches(self) -> list[CacheStats]:
        return self._each(lambda inst: [c] if (c := inst.cache_stats()) is not None else [])

    def _cache_requests(self, options: CallbackOptions) -> Iterable[Observation]:
        for c in self._caches():
            yield Observation(c.hits, {"clusterpool.cache.result": "hit"})
            yield Observation(c.misses, {"clusterpool.cache.result": "miss"})

    def _cache_drops(self, options: CallbackOptions) -> Iterable[Observation]:
        for c in self._caches():
            yield Observation(c.evictions, {"clusterpool.cache.reason": "eviction"})
            yield Observation(c.invalidations, {"clusterpool.cache.reason": "invalidation"})
            yield Observation(c.expired, {"clusterpool.cache.reason": "expired"})
            for reason, n in c.flushes.items():
                yield Observation(n, {"clusterpool.cache.reason": f"flush.{reason}"})

    def _cache_size(self, options: CallbackOptions) -> Iterable[Observation]:
        for c in self._caches():
            yield Observation(c.bytes)

    def _cache_entries(self, options: CallbackOptions) -> Iterable[Observation]:
        for c in self._caches():
            yield Observation(c.entries)

    def add(self, inst: Counted) -> None:
        with self._lock:
            self._clients.add(inst)

    def discard(self, inst: Counted) -> None:
        with self._lock:
            self._clients.discard(inst)

    def _counts(self) -> list[tuple[str, int, int, int]]:
        return self._each(lambda inst: inst.connection_counts())

    def _each(self, read: Callable[[Counted], Iterable[T]]) -> list[T]:
        """`read(client)` of every registered client, concatenated."""
        with self._lock:
            clients = list(self._clients)
        out: list[T] = []
        for inst in clients:
            try:
                out.extend(read(inst))
            except Exception:  # a closed client, a map being swapped: skip it this round
                continue
        return out

    def _hedges(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[str, int] = {}
        for outcome, n in self._each(lambda inst: inst.hedge_counts()):
            totals[outcome] = totals.get(outcome, 0) + n
        for outcome, n in totals.items():
            yield Observation(n, {"clusterpool.hedge.outcome": outcome})

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


