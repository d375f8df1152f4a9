"""Read strategies: which node of a shard serves a read.

A strategy is any object with `pick(shard, states) -> Node | None` (or a plain
callable with that signature). `states` says which nodes are unusable right
now (breaker open, loading, lost their slot, link to the primary down or lagging past
`max_replica_lag`), each node's measured latency and each node's availability zone.
Returning None means "no choice": the router uses the primary.
Round-robin counters are `itertools.count` objects, whose `next()` is atomic
under the GIL, so the rotation stays fair across threads without a lock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .replication import Lag
from .topology import Node, Shard


@dataclass(frozen=True, slots=True)
class NodeStates:
    """What strategies may know about nodes: who is unusable, latency (seconds, EWMA) and zone."""

    down: frozenset[str] = frozenset()
    latency: Mapping[str, float] = field(default_factory=dict)
    zones: Mapping[str, str] = field(default_factory=dict)  # availability zone, when the node reports one


@dataclass(frozen=True, slots=True)
class LagBound:
    """`max_replica_lag` (seconds since the replica's last acknowledgement while it is behind) and
    `max_replica_lag_bytes` (replication offset not acknowledged yet); None: no bound."""

    seconds: float | None = None
    bytes: int | None = None

    @property
    def active(self) -> bool:
        return self.seconds is not None or self.bytes is not None

    def exceeded(self, lag: Lag) -> bool:
        """The replica gets no reads: its link is down, or it is past either bound."""
        if not lag.linked:
            return True
        return (self.seconds is not None and lag.seconds > self.seconds) or (
            self.bytes is not None and lag.bytes > self.bytes)


def lagging(lags: Mapping[str, Lag], bound: LagBound) -> frozenset[str]:
    """The replicas (by name) that `bound` keeps reads off; nothing when no bound is set."""
    if not bound.active:
        return frozenset()
    return frozenset(name for name, lag in lags.items() if bound.exceeded(lag))


@runtime_checkable
class ReadStrategy(Protocol):
    def pick(self, shard: Shard, states: NodeStates) -> Node | None: ...


class _RoundRobin:
    """A per-shard rotation over candidates, skipping unusable nodes."""

    __slots__ = ("_counters",)

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count[int]] = {}

    def rotate(self, key: str, candidates: tuple[Node, ...], down: frozenset[str]) -> Node | None:
        n = len(candidates)
        if not n:
            return None
        ctr = self._counters.get(key)
        if ctr is None:
            ctr = self._counters.setdefault(key, itertools.count())
        i = next(ctr)
        if not down:
            return candidates[i % n]
        for k in range(n):
            node = candidates[(i + k) % n]
            if node.name not in down:
                return node
        return None


class Primary:
    """Every read on the shard's primary (read-your-writes)."""

    name = "primary"

    def pick(self, shard: Shard, states: NodeStates) -> Node | None:
        return shard.primary


class Replica:
    """Round-robin over the shard's usable replicas; the primary when none is usable."""

    name = "replica"

    def __init__(self, fallback_to_primary: bool = True) -> None:
        self._rr = _RoundRobin()
        self.fallback_to_primary = fallback_to_primary

    def pick(self, shard: Shard, states: NodeStates) -> Node | None:
        node = self._rr.rotate(shard.id, shard.readable, states.down)
        if node is None and self.fallback_to_primary:
            return shard.primary
        return node


class ReplicaPreferred(Replica):
    """Replicas when any is usable, else the primary (always falls back)."""

    name = "replica_preferred"

    def __init__(self) -> None:
        super().__init__(fallback_to_primary=True)


class Any_:
    """Round-robin over the primary and its usable replicas."""

    name = "any"

    def __init__(self) -> None:
        self._rr = _RoundRobin()

    def pick(self, shard: Shard, states: NodeStates) -> Node | None:
        cands = ((shard.primary,) if shard.primary else ()) + shard.readable
        return self._rr.rotate(shard.id, cands, states.down)


class Nearest:
    """The usable node (primary or replica) with the lowest measured latency.

    Nodes not measured yet count as 0 so each gets tried; ties rotate.
    """

    name = "nearest"

    def __init__(self, include_primary: bool = True, tolerance: float = 0.10) -> None:
        self.include_primary = include_primary
        self.tolerance = tolerance  # nodes within 10% of the best share the load
        self._rr = _RoundRobin()

    def pick(self, shard: Shard, states: NodeStates) -> Node | None:
        cands = shard.readable
        if self.include_primary and shard.primary is not None:
            cands = (shard.primary,) + cands
        lat = states.latency
        usable = [n for n in cands if n.name not in states.down]
        if not usable:
            return shard.primary
        best = min(lat.get(n.name, 0.0) for n in usable)
        limit = best * (1 + self.tolerance)
        near = tuple(n for n in usable if lat.get(n.name, 0.0) <= limit)
        return self._rr.rotate(shard.id, near, frozenset())


class AZAffinity:
    """Replicas in the client's zone (round-robin); with `include_primary`, then the primary if it
    is in that zone; then any usable replica; then the primary (glide's AZ_AFFINITY and
    AZ_AFFINITY_REPLICAS_AND_PRIMARY). A node that reports no zone is in no zone."""

    def __init__(self, zone: str, include_primary: bool = False) -> None:
        if not isinstance(zone, str) or not zone:
            raise ValueError(f"zone affinity needs the client's zone (client_az=), got {zone!r}")
        self.zone = zone
        self.include_primary = include_primary
        self.name = AZ_AFFINITY_REPLICAS_AND_PRIMARY if include_primary else AZ_AFFINITY
        self._rr = _RoundRobin()

    def pick(self, shard: Shard, states: NodeStates) -> Node | None:
        zones, down = states.zones, states.down
        usable = tuple(n for n in shard.readable if n.name not in down)
        local = tuple(n for n in usable if zones.get(n.name) == self.zone)
        if local:
            return self._rr.rotate(shard.id + "@" + self.zone, local, frozenset())
        p = shard.primary
        if self.include_primary and p is not None and p.name not in down and zones.get(p.name) == self.zone:
            return p
        return self._rr.rotate(shard.id, usable, frozenset()) or p


class _Callable:
    """Adapts a plain function `fn(shard, states) -> Node | None` to a strategy."""

    def __init__(self, fn: Callable[[Shard, NodeStates], Node | None]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", "custom")

    def pick(self, shard: Shard, states: NodeStates) -> Node | None:
        return self.fn(shard, states)


PRIMARY = "primary"
REPLICA = "replica"
REPLICA_PREFERRED = "replica_preferred"
ANY = "any"
NEAREST = "nearest"
AZ_AFFINITY = "az_affinity"
AZ_AFFINITY_REPLICAS_AND_PRIMARY = "az_affinity_replicas_and_primary"

_NAMED: dict[str, Callable[[], ReadStrategy]] = {
    PRIMARY: Primary,
    REPLICA: Replica,
    REPLICA_PREFERRED: ReplicaPreferred,
    ANY: Any_,
    NEAREST: Nearest,
}
_ZONED = (AZ_AFFINITY, AZ_AFFINITY_REPLICAS_AND_PRIMARY)

StrategyLike = str | ReadStrategy | Callable[[Shard, NodeStates], "Node | None"]


def choose(shard: Shard, states: NodeStates, strategy: ReadStrategy, to_primary: bool, fallback: bool) -> Node:
    """The node of `shard` (which has a primary) that serves a read: the strategy's pick, or with
    the primary strategy the primary, unless it is down and `fallback` lets a replica answer."""
    primary: Node = shard.primary  # type: ignore[assignment]
    if not to_primary:
        return strategy.pick(shard, states) or primary
    if fallback and states.down and primary.name in states.down:
        # primary unreachable: a replica's (maybe stale) answer beats an error
        for r in shard.readable:
            if r.name not in states.down:
                return r
    return primary


def reader_strategy(client_az: str | None) -> ReadStrategy:
    """What `client.reader` uses when the client's own strategy is the primary: replicas
    round-robin, in the client's zone first when it has one."""
    return AZAffinity(client_az) if client_az else Replica()


def make_strategy(spec: StrategyLike, client_az: str | None = None) -> ReadStrategy:
    """A strategy from a name ("replica", "az_affinity", ...), a strategy object, or a callable;
    the zone-affinity names read the client's zone from `client_az`."""
    if isinstance(spec, str):
        name = spec.lower()
        if name in _ZONED:
            if not client_az:
                raise ValueError(f"read_from={spec!r} needs client_az= (the zone this client runs in)")
            return AZAffinity(client_az, include_primary=name == AZ_AFFINITY_REPLICAS_AND_PRIMARY)
        try:
            return _NAMED[name]()
        except KeyError:
            raise ValueError(
                f"unknown read_from {spec!r}: use one of {', '.join((*_NAMED, *_ZONED))} "
                "or an object with pick(shard, states)"
            ) from None
    if isinstance(spec, ReadStrategy):
        return spec
    if callable(spec):
        return _Callable(spec)
    raise TypeError(f"read_from must be a strategy name, a strategy or a callable, not {type(spec).__name__}")
