"""The cluster's shape as an immutable value: nodes, shards, slot table.

How this works: `parse_shards` (CLUSTER SHARDS) or `parse_slots` (CLUSTER
SLOTS, for servers before 7.0) turn one node's raw reply into a `Topology`.
A Topology is never changed; the router swaps in a new one, and
`events.diff` says what changed between two. Node health as the *client*
measures it lives with the client's node state, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .slots import SLOT_COUNT
from .resp import as_map, text

PRIMARY = "primary"
REPLICA = "replica"

AddressMap = Callable[[str, int], tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Node:
    """One cluster node as the cluster reports it."""

    host: str
    port: int
    role: str
    id: str = ""
    health: str = "online"  # online | fail | loading (CLUSTER SHARDS' word)
    replication_offset: int = field(default=0, compare=False)  # changes with every write

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def usable(self) -> bool:
        """Not marked failed by the cluster.

        Redis 7.0 reports a replica as "loading" while the offset it gossips is
        0, which is also true of a healthy replica of a primary that has not
        been written to yet; a replica that really is loading answers LOADING,
        and the router then skips it until it recovers.
        """
        return self.health not in ("fail", "failed")

    def __str__(self) -> str:
        return f"{self.name} ({self.role}, {self.health})"


@dataclass(frozen=True, slots=True)
class Shard:
    """A primary, its replicas and the slot ranges they serve."""

    slots: tuple[tuple[int, int], ...]
    primary: Node | None
    replicas: tuple[Node, ...] = ()
    id: str = ""
    # Replicas fit to serve reads (online), computed once: routing reads it per command.
    readable: tuple[Node, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "readable", tuple(r for r in self.replicas if r.usable))

    @property
    def nodes(self) -> tuple[Node, ...]:
        return ((self.primary,) if self.primary else ()) + self.replicas

    @property
    def slot_count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)


def _build_slot_table(shards: Iterable[Shard]) -> tuple[Shard | None, ...]:
    table: list[Shard | None] = [None] * SLOT_COUNT
    for shard in shards:
        for start, end in shard.slots:
            table[start : end + 1] = [shard] * (end - start + 1)
    return tuple(table)


@dataclass(frozen=True, slots=True)
class Topology:
    """An immutable snapshot of the slot map. Compare with `==`; serialise with `as_dict()`."""

    shards: tuple[Shard, ...]
    source: str = field(default="", compare=False)  # which node answered; not part of the map
    version: int = field(default=0, compare=False)
    slot_table: tuple[Shard | None, ...] = field(default=(), compare=False, repr=False)
    by_name: Mapping[str, Node] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot_table", _build_slot_table(self.shards))
        object.__setattr__(
            self,
            "by_name",
            MappingProxyType({n.name: n for s in self.shards for n in s.nodes}),
        )

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(self.by_name.values())

    @property
    def primaries(self) -> tuple[Node, ...]:
        return tuple(s.primary for s in self.shards if s.primary is not None)

    @property
    def replicas(self) -> tuple[Node, ...]:
        return tuple(r for s in self.shards for r in s.replicas)

    @property
    def covered(self) -> int:
        """How many slots have a primary."""
        return sum(s.slot_count for s in self.shards if s.primary is not None)

    def shard_for_slot(self, slot: int) -> Shard | None:
        return self.slot_table[slot]

    def with_version(self, version: int) -> Topology:
        return Topology(self.shards, self.source, version)

    def served_by(self, slot: int, host: str, port: int) -> bool:
        """Whether `slot`'s shard has host:port as its primary (a MOVED there changes nothing)."""
        shard = self.slot_table[slot]
        primary = shard.primary if shard is not None else None
        return primary is not None and primary.host == host and primary.port == port

    def with_slot_moved(self, slot: int, host: str, port: int) -> Topology:
        """A copy in which `slot` belongs to the shard whose primary is host:port (MOVED)."""
        name = f"{host}:{port}"
        target = next((s for s in self.shards if s.primary and s.primary.name == name), None)
        shards: list[Shard] = []
        for s in self.shards:
            kept = tuple(r for r in s.slots if not (r[0] <= slot <= r[1]))
            if len(kept) != len(s.slots):  # split the range that held the slot
                old = next(r for r in s.slots if r[0] <= slot <= r[1])
                kept += tuple(r for r in ((old[0], slot - 1), (slot + 1, old[1])) if r[0] <= r[1])
            if s is target:
                kept += ((slot, slot),)
            shards.append(Shard(_merge(kept), s.primary, s.replicas, s.id))
        if target is None:
            primary = self.by_name.get(name) or Node(host, port, PRIMARY)
            if primary.role != PRIMARY:
                primary = Node(host, port, PRIMARY, primary.id)
            shards = [
                Shard(s.slots, s.primary, tuple(r for r in s.replicas if r.name != name), s.id)
                for s in shards
            ]
            shards.append(Shard(((slot, slot),), primary))
        return Topology(_sorted(s for s in shards if s.slots or s.primary), self.source, self.version + 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "source": self.source,
            "covered_slots": self.covered,
            "shards": [
                {
                    "id": s.id,
                    "slots": [list(r) for r in s.slots],
                    "primary": _node_dict(s.primary) if s.primary else None,
                    "replicas": [_node_dict(r) for r in s.replicas],
                }
                for s in self.shards
            ],
        }


def _node_dict(n: Node) -> dict[str, Any]:
    return {
        "name": n.name,
        "id": n.id,
        "host": n.host,
        "port": n.port,
        "role": n.role,
        "health": n.health,
    }


def _merge(slot_ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(slot_ranges):
        if out and start <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return tuple(out)


def _sorted(shards: Iterable[Shard]) -> tuple[Shard, ...]:
    return tuple(sorted(shards, key=lambda s: (s.slots[0][0] if s.slots else SLOT_COUNT, s.id)))


# ---------------------------------------------------------------- parsing


def _identity(host: str, port: int) -> tuple[str, int]:
    return host, port


def _endpoint(raw: Mapping[str, Any], fallback_host: str) -> str:
    for key in ("endpoint", "ip", "hostname"):
        host = text(raw.get(key, "") or "")
        if host and host != "?":
            return host
    return fallback_host


def parse_shards(
    reply: Any,
    source_host: str = "127.0.0.1",
    *,
    tls: bool = False,
    address_map: AddressMap | None = None,
    source: str = "",
) -> Topology:
    """A Topology from a CLUSTER SHARDS reply (RESP2 or RESP3 shape, bytes or str)."""
    amap = address_map or _identity
    shards: list[Shard] = []
    for raw_shard in reply:
        sh = as_map(raw_shard)
        flat = [int(x) for x in sh.get("slots", [])]
        slot_ranges = _merge(zip(flat[0::2], flat[1::2]))
        primaries: list[Node] = []
        replicas: list[Node] = []
        for raw_node in sh.get("nodes", []):
            nd = as_map(raw_node)
            port_key = "tls-port" if tls and "tls-port" in nd else "port"
            if port_key not in nd:
                continue
            host, port = amap(_endpoint(nd, source_host), int(nd[port_key]))
            role = PRIMARY if text(nd.get("role", "")) in ("master", "primary") else REPLICA
            node = Node(
                host,
                port,
                role,
                text(nd.get("id", "")),
                text(nd.get("health", "online")),
                int(nd.get("replication-offset", 0) or 0),
            )
            (primaries if role == PRIMARY else replicas).append(node)
        # Valkey 8.0 keeps listing a failed primary as "master" next to the replica promoted in
        # its place: the primary is the first usable one; any other is shown as a replica
        primaries.sort(key=lambda n: not n.usable)
        primary = primaries[0] if primaries else None
        replicas += [Node(n.host, n.port, REPLICA, n.id, n.health) for n in primaries[1:]]
        if primary is None and not slot_ranges and not replicas:
            continue
        if primary is not None and not primary.usable:
            # A primary the cluster marked failed (no replica promoted yet): keep it
            # visible but route nothing to it, so its slots count as uncovered.
            replicas_t = tuple(replicas)
            shards.append(Shard(slot_ranges, None, replicas_t, primary.id))
            continue
        shard_id = primary.id if primary else ""
        shards.append(Shard(slot_ranges, primary, tuple(replicas), shard_id))
    return Topology(_sorted(shards), source)


def parse_slots(
    reply: Any,
    source_host: str = "127.0.0.1",
    *,
    address_map: AddressMap | None = None,
    source: str = "",
) -> Topology:
    """A Topology from a CLUSTER SLOTS reply (servers older than 7.0)."""
    amap = address_map or _identity
    by_primary: dict[tuple[str, int], tuple[list[tuple[int, int]], Node, dict[str, Node]]] = {}
    for entry in reply:
        start, end = int(entry[0]), int(entry[1])
        nodes = entry[2:]
        if not nodes:
            continue
        p = nodes[0]
        phost = text(p[0]) or source_host
        if phost == "?":
            phost = source_host
        host, port = amap(phost, int(p[1]))
        pid = text(p[2]) if len(p) > 2 else ""
        ranges_, primary, reps = by_primary.setdefault(
            (host, port), ([], Node(host, port, PRIMARY, pid), {})
        )
        ranges_.append((start, end))
        for r in nodes[1:]:
            rh, rp = amap(text(r[0]) or source_host, int(r[1]))
            rid = text(r[2]) if len(r) > 2 else ""
            reps[f"{rh}:{rp}"] = Node(rh, rp, REPLICA, rid)
    shards = [
        Shard(_merge(rs), primary, tuple(reps.values()), primary.id)
        for rs, primary, reps in by_primary.values()
    ]
    return Topology(_sorted(shards), source)


def single_node(host: str, port: int) -> Topology:
    """A placeholder map that sends every slot to one node (before discovery)."""
    return Topology((Shard(((0, SLOT_COUNT - 1),), Node(host, port, PRIMARY)),), f"{host}:{port}")
