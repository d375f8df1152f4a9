"""Nodes as users see and name them, for both clients: frozen handles shaped like redis-py's
ClusterNode, the "host:port" names every node form comes down to, and RedisCluster's picks
(the node of a key, the default node). Pure: no I/O.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from redis.exceptions import SlotNotCoveredError as _RedisSlotNotCovered

from . import errors
from .slots import slot_of
from .topology import Node, Topology

__all__ = ["NodeHandle", "known_node_name", "node_from_key", "node_name_for", "node_name_of",
           "pick_default_node"]


@dataclass(frozen=True, slots=True, eq=False)
class NodeHandle:
    """One node as redis-py's ClusterNode shows it: host, port, name, server_type (a frozen copy).

    Equal to any node object with the same name (ours, or redis-py's ClusterNode)."""

    host: str
    port: int
    server_type: str

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def __eq__(self, other: object) -> bool:
        return getattr(other, "name", None) == self.name and hasattr(other, "server_type")

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"[host={self.host},port={self.port},name={self.name},server_type={self.server_type}]"


def node_name_of(target: Any) -> str:
    """"host:port" for a node given as a handle, redis-py ClusterNode, our Node, or a "host:port" string."""
    if isinstance(target, str):
        return target
    name = getattr(target, "name", None)
    if isinstance(name, str):
        return name
    if hasattr(target, "host") and hasattr(target, "port"):
        return f"{target.host}:{target.port}"
    raise TypeError(
        "target_nodes type can be one of the following: node_flag (PRIMARIES, REPLICAS, RANDOM, "
        f"ALL_NODES), ClusterNode, list<ClusterNode>, or dict<any, ClusterNode>. The passed type is {type(target)}"
    )


def node_name_for(host: str | None, port: int | None, node_name: str | None) -> str | None:
    """The "host:port" that get_node(host, port) / get_node(node_name=) looks up ("localhost" resolved,
    as RedisCluster does); None when neither is given."""
    if host and port:
        if host == "localhost":
            host = socket.gethostbyname(host)
        return f"{host}:{port}"
    return node_name or None


def node_from_key(topo: Topology, key: Any, replica: bool = False) -> Node | None:
    """RedisCluster's get_node_from_key: the primary serving `key`'s slot, or its first replica
    with `replica=True` (None if it has none); redis-py's SlotNotCoveredError for an unserved slot."""
    slot = slot_of(key)
    shard = topo.slot_table[slot]
    if shard is None or shard.primary is None:
        raise _RedisSlotNotCovered(f'Slot "{slot}" is not covered by the cluster.')
    if replica:
        return shard.replicas[0] if shard.replicas else None
    return shard.primary


def known_node_name(topo: Topology, node: Any) -> str | None:
    """The name of `node` (any node object or "host:port") when `topo` has it, else None."""
    if not node:
        return None
    name = node_name_of(node)
    return name if name in topo.by_name else None


def pick_default_node(topo: Topology, current: str | None, down: Collection[str]) -> Node:
    """Where keyless commands go, as RedisCluster: `current` while it is usable and not down,
    else the first primary not down (the caller keeps the returned node's name)."""
    if current is not None:
        node = topo.by_name.get(current)
        if node is not None and node.usable and current not in down:
            return node
    primaries = topo.primaries
    if not primaries:
        raise errors.SlotNotCoveredError("the cluster's map has no primary")
    return next((p for p in primaries if p.name not in down), primaries[0])


def another_default(topo: Topology, current: str) -> Node | None:
    """RedisCluster's replace_default_node() without a target: another primary at random, else
    another replica; None (no change) when the map has no other node."""
    for group in (topo.primaries, topo.replicas):
        others = [n for n in group if n.name != current]
        if others:
            return random.choice(others)
    return None
