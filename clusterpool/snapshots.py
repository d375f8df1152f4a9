"""Inspection values of both clients: what the client believes the cluster looks like, with live
node state, and its counters (PoolStats, ClientStats). Frozen; no I/O.

The snapshots are built by pure functions (`topology_view`, `nodes_with_role`, `client_stats`)
that the sync client's InspectionMixin and the asyncio client both call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from . import errors
from .hedging import HedgeStats
from .cachestore import CacheStats
from .replication import Lag
from .slots import SLOT_COUNT
from .texttable import Table, ms, plain, slot_ranges, table
from .topology import REPLICA, Node, Topology

if TYPE_CHECKING:
    from .asyncio.connections import NodeConnectionsStats
    from .nodestate import NodeState


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A consistent copy of one pool's counters."""

    node: str
    max_connections: int
    size: int
    in_use: int
    idle: int
    waiting: int
    created: int
    closed: int
    timeouts: int
    errors: int
    acquires: int
    wait_time_total: float


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node: the cluster's view (role, flags) plus the client's (health, latency, pool, and
    from the maintenance probe the node's zone and, for a replica, its lag behind the primary)."""

    name: str
    id: str
    host: str
    port: int
    role: str
    cluster_health: str
    health: str
    latency_ms: float | None
    pool: PoolStats | None
    zone: str | None = None
    lag: Lag | None = None


@dataclass(frozen=True, slots=True)
class ShardView:
    slots: tuple[tuple[int, int], ...]
    primary: NodeView | None
    replicas: tuple[NodeView, ...]


@dataclass(frozen=True, slots=True)
class TopologyView:
    """An immutable snapshot for people and tools: prints well, `as_dict()` is JSON-ready."""

    version: int
    source: str
    covered_slots: int
    shards: tuple[ShardView, ...]

    @property
    def nodes(self) -> tuple[NodeView, ...]:
        return tuple(n for s in self.shards for n in ((s.primary,) if s.primary else ()) + s.replicas)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> Table:
        """One row per node, grouped by shard: slots, role, both health views, latency, pool use,
        zone and (for a replica) its lag behind the primary."""
        state = "ok" if self.covered_slots == SLOT_COUNT else "NOT FULLY COVERED"
        title = (f"cluster via {self.source or '-'}: {len(self.shards)} shards, {len(self.nodes)} nodes, "
                 f"{self.covered_slots}/{SLOT_COUNT} slots covered ({state}), map v{self.version}")
        columns = ("shard", "slots", "node", "role", "cluster health", "client health", "latency ms",
                   "pool (in use/size)", "zone", "lag")
        return table(title, columns, (_shard_rows(i, s) for i, s in enumerate(self.shards)))

    def __str__(self) -> str:
        """The summary `print(client.topology())` shows: a title line and one line per node."""
        return plain(self.table())


def _shard_rows(i: int, shard: ShardView) -> list[tuple[str, ...]]:
    members = ([shard.primary] if shard.primary else []) + list(shard.replicas)
    if not members:
        return [(str(i), slot_ranges(shard.slots), "-", "-", "-", "-", "-", "-", "-", "-")]
    return [
        (str(i) if j == 0 else "", slot_ranges(shard.slots) if j == 0 else "", n.name, n.role,
         n.cluster_health, n.health, ms(n.latency_ms), "-" if n.pool is None else f"{n.pool.in_use}/{n.pool.size}",
         n.zone or "-", _lag_text(n.lag))
        for j, n in enumerate(members)
    ]


def _lag_text(lag: Lag | None) -> str:
    """A replica's lag as the topology table shows it."""
    if lag is None:
        return "-"
    return f"{lag.bytes} B / {lag.seconds} s" if lag.linked else "not linked"


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Pool counters per node and summed, plus refresh counters."""

    nodes: tuple[PoolStats, ...]
    total_connections: int
    in_use: int
    idle: int
    waiting: int
    acquire_timeouts: int
    refreshes: int
    refresh_requests: int
    topology_version: int
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)  # with track_latency=True
    # the asyncio client's connection layer per node (shared auto-pipelined connections and
    # dedicated leases); empty on the sync client
    connections: tuple[NodeConnectionsStats, ...] = ()
    cache: CacheStats | None = None  # client-side caching's counters (None: no cache_config)
    hedges: HedgeStats = field(default_factory=HedgeStats)  # hedged reads (with hedge=)

    @property
    def pending(self) -> int:
        """Commands queued or awaiting their reply on the asyncio client's shared connections."""
        return sum(m.pending for c in self.connections for m in c.shared)

    @property
    def leased(self) -> int:
        """Dedicated connections the asyncio client has leased out (blocking commands ...)."""
        return sum(c.dedicated.leased for c in self.connections)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> Table:
        """One row per node's pool counters, under a title with the totals."""
        title = (f"pools: {self.total_connections} connections ({self.in_use} in use, {self.idle} idle, "
                 f"{self.waiting} waiting), {self.refreshes} refreshes, map v{self.topology_version}")
        columns = ("node", "max", "size", "in use", "idle", "waiting", "created", "closed", "timeouts",
                   "errors", "acquires", "wait ms")
        rows = [
            (p.node, str(p.max_connections), str(p.size), str(p.in_use), str(p.idle), str(p.waiting),
             str(p.created), str(p.closed), str(p.timeouts), str(p.errors), str(p.acquires),
             f"{p.wait_time_total * 1000:.3f}")
            for p in sorted(self.nodes, key=lambda p: p.node)
        ]
        return table(title, columns, [rows])

    def __str__(self) -> str:
        """The pool counters as a readable table (`print(client.stats())`)."""
        return plain(self.table())


def topology_view(t: Topology, nodes: Mapping[str, NodeState[Any]],
                  pool_stats: Callable[[NodeState[Any]], PoolStats | None]) -> TopologyView:
    """The snapshot of map `t` with each node's live state (`nodes`, by name) and pool counters."""

    def view(n: Node) -> NodeView:
        st = nodes.get(n.name)
        return NodeView(
            n.name, n.id, n.host, n.port, n.role, n.health,
            st.health.value if st else "healthy",
            None if st is None or st.latency is None else round(st.latency * 1000, 3),
            pool_stats(st) if st else None,
            st.zone if st else None,
            st.lag if st and n.role == REPLICA else None,
        )

    shards = tuple(
        ShardView(s.slots, view(s.primary) if s.primary else None, tuple(view(r) for r in s.replicas))
        for s in t.shards
    )
    return TopologyView(t.version, t.source, t.covered, shards)


EMPTY_VIEW = TopologyView(0, "", 0, ())  # before discovery


def nodes_with_role(nodes: tuple[Node, ...], role: str | None) -> tuple[Node, ...]:
    """`nodes`, optionally only the "primary" or "replica" ones (ConfigurationError for another role)."""
    if role is None:
        return nodes
    if role not in ("primary", "replica"):
        raise errors.ConfigurationError(f"role must be 'primary' or 'replica', not {role!r}")
    return tuple(n for n in nodes if n.role == role)


def client_stats(per: Iterable[PoolStats], refreshes: int, refresh_requests: int, version: int,
                 latency: dict[str, dict[str, Any]] | None = None,
                 connections: tuple[NodeConnectionsStats, ...] = (), cache: CacheStats | None = None,
                 hedges: HedgeStats | None = None) -> ClientStats:
    """Per-node pool counters summed into one ClientStats."""
    nodes = tuple(per)
    return ClientStats(
        nodes,
        sum(p.size for p in nodes),
        sum(p.in_use for p in nodes),
        sum(p.idle for p in nodes),
        sum(p.waiting for p in nodes),
        sum(p.timeouts for p in nodes),
        refreshes,
        refresh_requests,
        version,
        latency or {},
        connections,
        cache,
        hedges or HedgeStats(),
    )
