"""What adopting a new slot map changes (pure): the events to publish, the node states whose role
changed (their connections must be remade with or without READONLY) and the ones to close.

The core applies an `Adoption` under its lock and closes sockets after releasing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .events import Event, TopologyRefreshed, diff
from .topology import REPLICA, Topology


@dataclass(frozen=True, slots=True)
class Adoption:
    topology: Topology  # the new map, with its version
    events: tuple[Event, ...]
    readonly: Mapping[str, bool]  # node -> its new READONLY flag, for nodes whose role changed
    close: tuple[str, ...]  # nodes no longer in the map: their states and pools go


def plan(announced: Topology | None, current: Topology | None, readonly: Mapping[str, bool],
         new: Topology, version: int) -> Adoption | None:
    """The adoption of `new`, or None when it is the map already in use and announced.

    Events are diffed against `announced`, the last refreshed map, not against `current`:
    a MOVED patch changes `current` without events, and diffing against the patch would
    hide those slots' SlotsMoved. `readonly` maps each node with a state to its flag now.
    """
    if current is not None and new == current and current is announced:
        return None
    new = new.with_version(version)
    flips = {
        n.name: n.role == REPLICA
        for n in new.nodes
        if n.name in readonly and readonly[n.name] != (n.role == REPLICA)
    }
    close = tuple(name for name in readonly if name not in new.by_name)
    old = announced if announced is not None else current
    events: list[Event] = diff(old, new) if old is not None else []
    events.append(TopologyRefreshed(new.version, new.source, len(events)))
    return Adoption(new, tuple(events), flips, close)
