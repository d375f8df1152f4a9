"""Inspection values: what the client believes the cluster looks like, with live node state."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .pool import PoolStats


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node: the cluster's view (role, flags) plus the client's (health, latency, pool)."""

    name: str
    id: str
    host: str
    port: int
    role: str
    cluster_health: str
    health: str
    latency_ms: float | None
    pool: PoolStats | None


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
