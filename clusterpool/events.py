"""Event values published when the cluster's shape or a node's health changes.

Frozen dataclasses with slots: safe to hand to any thread, print, compare, or
turn into JSON with `as_dict()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .slots import SLOT_COUNT, ranges
from .topology import PRIMARY, Node, Topology


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events; `name` is what `client.on(name, ...)` subscribes to."""

    name: ClassVar[str] = "event"

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.name, **asdict(self)}


@dataclass(frozen=True, slots=True)
class NodeAdded(Event):
    name: ClassVar[str] = "node_added"
    node: Node


@dataclass(frozen=True, slots=True)
class NodeRemoved(Event):
    name: ClassVar[str] = "node_removed"
    node: Node


@dataclass(frozen=True, slots=True)
class RoleChanged(Event):
    """A node changed role; on failover, `old_primary` is the node it replaced."""

    name: ClassVar[str] = "role_changed"
    node: Node
    old_role: str
    new_role: str
    old_primary: str | None = None


@dataclass(frozen=True, slots=True)
class SlotsMoved(Event):
    """Slot ranges whose owner changed from `source` to `target` (node names; None = uncovered)."""

    name: ClassVar[str] = "slots_moved"
    ranges: tuple[tuple[int, int], ...]
    source: str | None
    target: str | None


@dataclass(frozen=True, slots=True)
class NodeHealthChanged(Event):
    name: ClassVar[str] = "node_health_changed"
    node: str
    old: str
    new: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class NodeZoneLearned(Event):
    """A node's availability zone (Valkey 8+ `INFO server`), told once per node when first learned."""

    name: ClassVar[str] = "node_zone"
    node: str
    zone: str


@dataclass(frozen=True, slots=True)
class TopologyRefreshed(Event):
    """A new slot map is in use (fired after it was swapped in)."""

    name: ClassVar[str] = "topology_refreshed"
    version: int
    source: str
    changes: int = 0


@dataclass(frozen=True, slots=True)
class RefreshFailed(Event):
    name: ClassVar[str] = "refresh_failed"
    error: str
    tried: tuple[str, ...] = field(default_factory=tuple)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        NodeAdded,
        NodeRemoved,
        RoleChanged,
        SlotsMoved,
        NodeHealthChanged,
        NodeZoneLearned,
        TopologyRefreshed,
        RefreshFailed,
    )
}


def diff(old: Topology, new: Topology) -> list[Event]:
    """Every change from `old` to `new`: nodes added/removed, roles changed, slots moved."""
    out: list[Event] = []
    old_nodes, new_nodes = old.by_name, new.by_name
    for name, node in new_nodes.items():
        if name not in old_nodes:
            out.append(NodeAdded(node))
    for name, node in old_nodes.items():
        if name not in new_nodes:
            out.append(NodeRemoved(node))
    old_owner = _owners(old)
    new_owner = _owners(new)
    for name, node in new_nodes.items():
        before = old_nodes.get(name)
        if before is not None and before.role != node.role:
            replaced = None
            if node.role == PRIMARY:
                # the primary it took over from: whoever owned its slots before
                for slot, owner in enumerate(new_owner):
                    if owner == name and old_owner[slot] not in (None, name):
                        replaced = old_owner[slot]
                        break
            out.append(RoleChanged(node, before.role, node.role, replaced))
    moves: dict[tuple[str | None, str | None], list[int]] = {}
    for slot in range(SLOT_COUNT):
        a, b = old_owner[slot], new_owner[slot]
        if a != b:
            moves.setdefault((a, b), []).append(slot)
    for (src, dst), slots in moves.items():
        out.append(SlotsMoved(ranges(slots), src, dst))
    return out


def _owners(t: Topology) -> list[str | None]:
    return [s.primary.name if s is not None and s.primary is not None else None for s in t.slot_table]
