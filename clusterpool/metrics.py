"""Optional Prometheus collector (`pip install "redis-clusterpool[prometheus]"`).

    from prometheus_client import REGISTRY
    REGISTRY.register(PoolCollector(client))

Reads `client.stats()` at scrape time: gauges for pool size/in use/idle/waiting,
counters for connections created/closed, acquire timeouts, errors and
acquires, all labelled by node; plus refresh counters for the client, and a
command latency histogram per node when the client has `track_latency=True`, and the
client-side cache's counters and size when it has `cache_config=`.
The same collector takes the asyncio `ClusterClient`, whose stats() have the same
shape; it adds per-node gauges for its shared connections (pending replies) and
dedicated leases, and counters of commands, socket writes and dropped replies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .cachestore import CacheStats
    from .snapshots import ClientStats


class StatsSource(Protocol):
    """What the collector reads: the sync or the asyncio ClusterClient."""

    def stats(self) -> ClientStats: ...

BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

_GAUGES = (
    ("size", "connections open in the node's pool"),
    ("in_use", "connections lent out"),
    ("idle", "connections waiting in the pool"),
    ("waiting", "callers waiting for a connection"),
    ("max_connections", "the pool's bound"),
)
_CACHE_COUNTERS = (
    ("hits", "reads served from the client-side cache"),
    ("misses", "cacheable reads sent to the server"),
    ("stores", "replies stored in the cache"),
    ("evictions", "entries dropped to stay inside the bounds"),
    ("invalidations", "entries dropped by the server's invalidation messages"),
    ("expired", "entries dropped by the TTL"),
)
_COUNTERS = (
    ("created", "connections opened"),
    ("closed", "connections closed"),
    ("timeouts", "acquires that timed out (PoolTimeoutError)"),
    ("errors", "connection attempts that failed"),
    ("acquires", "connections acquired"),
)


HEDGE_COUNTERS = (
    ("reads", "reads that could be hedged"),
    ("sent", "hedges sent (the read sent again to another node of the shard)"),
    ("won", "hedges whose reply came first"),
    ("suppressed", "hedges the budget did not allow"),
)


class PoolCollector:
    """A prometheus_client collector for one client's pools."""

    def __init__(self, client: StatsSource, prefix: str = "clusterpool") -> None:
        self.client = client
        self.prefix = prefix

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.client.stats()
        for field, doc in _GAUGES:
            g = GaugeMetricFamily(f"{self.prefix}_pool_{field}", doc, labels=["node"])
            for p in stats.nodes:
                g.add_metric([p.node], getattr(p, field))
            yield g
        for field, doc in _COUNTERS:
            c = CounterMetricFamily(f"{self.prefix}_pool_{field}", doc, labels=["node"])
            for p in stats.nodes:
                c.add_metric([p.node], getattr(p, field))
            yield c
        w = CounterMetricFamily(f"{self.prefix}_pool_acquire_wait_seconds", "time spent waiting to acquire",
                                labels=["node"])
        for p in stats.nodes:
            w.add_metric([p.node], p.wait_time_total)
        yield w
        if stats.connections:
            yield from self._async_connections(stats)
        recorder = getattr(self.client, "latency", None)
        if recorder is not None:  # with track_latency=True: the recent window as a histogram
            from prometheus_client.core import HistogramMetricFamily

            h = HistogramMetricFamily(f"{self.prefix}_command_seconds",
                                      "command latency over the recent window", labels=["node"])
            for node, samples in recorder.samples().items():
                buckets = [(str(le), sum(1 for x in samples if x <= le)) for le in BUCKETS]
                buckets.append(("+Inf", len(samples)))
                h.add_metric([node], buckets, sum(samples))
            yield h
        yield from self._hedges(stats)
        if stats.cache is not None:
            yield from self._cache(stats.cache)
        yield CounterMetricFamily(f"{self.prefix}_topology_refreshes", "slot map refreshes performed",
                                  value=stats.refreshes)
        yield GaugeMetricFamily(f"{self.prefix}_topology_version", "version of the slot map in use",
                                value=stats.topology_version)

    def _counters(self, group: str, source: Any, table: tuple[tuple[str, str], ...]) -> Iterator[Any]:
        """One counter family per (field, doc) of `table`, read from `source`."""
        from prometheus_client.core import CounterMetricFamily

        for field, doc in table:
            yield CounterMetricFamily(f"{self.prefix}_{group}_{field}", doc, value=getattr(source, field))

    def _hedges(self, stats: ClientStats) -> Iterator[Any]:
        """Hedged reads (zero without hedge=): hedgeable reads, hedges sent, won, suppressed."""
        from prometheus_client.core import GaugeMetricFamily

        h = stats.hedges
        yield from self._counters("hedge", h, HEDGE_COUNTERS)
        yield GaugeMetricFamily(f"{self.prefix}_hedge_held", "connections held until a late reply is read",
                                value=h.held)

    def _cache(self, cache: CacheStats) -> Iterator[Any]:
        """Client-side caching: counters since start, and what the cache holds."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self.prefix
        yield from self._counters("cache", cache, _CACHE_COUNTERS)
        f = CounterMetricFamily(f"{p}_cache_flushes", "bulk drops of cached entries, by reason", labels=["reason"])
        for reason, n in sorted(cache.flushes.items()):
            f.add_metric([reason], n)
        yield f
        yield GaugeMetricFamily(f"{p}_cache_entries", "entries cached", value=cache.entries)
        yield GaugeMetricFamily(f"{p}_cache_bytes", "bytes cached (estimate)", value=cache.bytes)
        yield GaugeMetricFamily(f"{p}_cache_max_bytes", "the cache's byte bound", value=cache.max_bytes)

    def _async_connections(self, stats: ClientStats) -> Iterator[Any]:
        """The asyncio client's connection layer, per node."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self.prefix
        gauges = (
            ("shared_connections", "shared auto-pipelined connections open", lambda c: len(c.shared)),
            ("shared_pending", "commands queued or awaiting their reply on shared connections",
             lambda c: sum(m.pending for m in c.shared)),
            ("dedicated_leased", "dedicated connections leased (blocking commands ...)", lambda c: c.dedicated.leased),
            ("dedicated_idle", "dedicated connections idle", lambda c: c.dedicated.idle),
            ("dedicated_waiting", "tasks waiting for a dedicated connection", lambda c: c.dedicated.waiting),
        )
        for name, doc, value in gauges:
            g = GaugeMetricFamily(f"{p}_async_{name}", doc, labels=["node"])
            for c in stats.connections:
                g.add_metric([c.node], value(c))
            yield g
        counters = (
            ("commands", "commands written to shared connections", "commands"),
            ("writes", "socket writes on shared connections (one per batch)", "writes"),
            ("dropped_replies", "replies read and dropped for cancelled or timed-out callers", "dropped"),
        )
        for name, doc, attr in counters:
            cm = CounterMetricFamily(f"{p}_async_{name}", doc, labels=["node"])
            for c in stats.connections:
                cm.add_metric([c.node], c.total(attr))
            yield cm
