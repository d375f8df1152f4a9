"""The sync client's inspection and events API: topology(), nodes(), node_for(), stats(), on(),
events(). The values it returns are built by snapshots' pure functions, as the asyncio
client's are. A mixin of ClusterClient.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .cachestore import FlushReason
from .slots import slot_of
from .snapshots import (ClientStats, TopologyView, client_stats,
                        nodes_with_role, topology_view)
from .topology import Node, Topology

if TYPE_CHECKING:
    from .bus import Callback, EventStream
    from .sizing import PoolSize
    from .core import Core
    from .hedged import HedgedReads

class InspectionMixin:
    """Inspection and events API of ClusterClient (kept apart from the command path)."""

    core: Core
    _hedging: HedgedReads | None

    def topology(self) -> TopologyView:
        """A frozen snapshot: shards, slot ranges, nodes with role, health, latency and pool stats."""
        core = self.core
        return topology_view(core.ensure(), core.nodes, lambda st: st.pool.stats())

    def node_for(self, key: Any, read: bool = False) -> Node:
        """The node a command on `key` would go to now (for a read when `read=True`)."""
        t = self.core.ensure()
        return self.pick_node(t, slot_of(key), read)  # type: ignore[attr-defined]

    def nodes(self, role: str | None = None) -> tuple[Node, ...]:
        """Known nodes, optionally only "primary" or "replica"."""
        return nodes_with_role(self.core.ensure().nodes, role)

    def stats(self) -> ClientStats:
        """Pool counters per node and in total."""
        core = self.core
        t = core.topology
        return client_stats(
            (st.pool.stats() for st in core.nodes.values()),
            core.refresher.count,
            core.refresher.requests,
            t.version if t else 0,
            self.latency.percentiles() if self.latency is not None else {},  # type: ignore[attr-defined]
            cache=core.cache.stats() if core.cache is not None else None,
            hedges=self._hedging.stats() if self._hedging is not None else None,
        )

    def cache_flush(self) -> int:
        """Drop every client-side cache entry now (0 without `cache_config=`); returns how many."""
        store = self.core.cache
        return 0 if store is None else store.flush_all(FlushReason.USER)

    def recommend_pool_size(self, headroom: float = 1.2) -> PoolSize:
        """`max_connections` per node by Little's law from this client's own numbers.

        Rate is connections acquired per second since discovery; latency is the
        mean command latency when `track_latency=True`, else the nodes' PING
        round trip (a lower bound: commands take at least that long).
        """
        from .sizing import recommend_pool_size

        core = self.core
        stats = self.stats()
        elapsed = max(time.monotonic() - core.started, 1e-3) if core.started else 1e-3
        rate = max(sum(p.acquires for p in stats.nodes) / elapsed, 1e-9)
        if stats.latency:
            lat_ms = sum(v["p50_ms"] * v["count"] for v in stats.latency.values()) / max(
                sum(v["count"] for v in stats.latency.values()), 1)
        else:
            pings = [st.latency for st in core.nodes.values() if st.latency is not None]
            lat_ms = (sum(pings) / len(pings) * 1000) if pings else 1.0
        primaries = max(len(core.topology.primaries) if core.topology else 1, 1)
        return recommend_pool_size(rate, max(lat_ms, 1e-6), headroom, primaries)

    def on(self, event: str, callback: Callback) -> Callback:
        """Call `callback(event)` for each event named `event` ("*" for all), off the command path."""
        return self.core.bus.on(event, callback)

    def off(self, event: str, callback: Callback) -> None:
        self.core.bus.off(event, callback)

    def events(self, maxsize: int = 10000) -> EventStream:
        """An iterator of events from now on (`with client.events() as ev: for e in ev: ...`)."""
        return self.core.bus.stream(maxsize)

    def refresh(self) -> Topology | None:
        """Refresh the slot map now (single-flight) and return it."""
        self.core.ensure()
        return self.core.refresher.refresh_now()
