"""redis.asyncio.cluster.RedisCluster's node API on the asyncio ClusterClient: get_nodes(), get_node(),
get_node_from_key(), the default node ...

How this works: as on the sync client (nodeapi.py, whose pure functions decide here too), node
objects are frozen `ClusterNode` handles (host, port, name, server_type) built from the current
immutable map; they compare equal to redis-py's ClusterNode of the same address and are accepted
by `target_nodes=`. These methods are plain (not coroutines), as RedisCluster's are: before
discovery (`await client.initialize()` or the first command) the map is empty, as RedisCluster's
is before `initialize()`. The default node is a name in a box the views share. A mixin of
ClusterClient.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from redis.exceptions import DataError
from redis.exceptions import SlotNotCoveredError as _RedisSlotNotCovered

from .._redispy import READ_COMMANDS
from ..handles import NodeHandle, another_default, known_node_name, node_from_key, node_name_for, pick_default_node
from ..slots import slot_of
from ..topology import Node, Topology

if TYPE_CHECKING:
    from .state import ClusterState

ClusterNode = NodeHandle  # the asyncio client's node object


def handle(node: Node) -> ClusterNode:
    """The node object RedisCluster's API hands out for a node of our map."""
    return ClusterNode(node.host, node.port, node.role)


class NodeAPIMixin:
    """get_nodes(), get_node(), get_default_node() ... as on redis.asyncio.cluster.RedisCluster."""

    _state: ClusterState
    _default: list[str]  # the default node's name (empty until chosen), one list for every view
    _to_primary: bool

    def _map(self) -> Topology | None:
        return self._state.topology

    def get_nodes(self) -> list[ClusterNode]:
        """Every node of the current map (none before discovery)."""
        t = self._map()
        return [] if t is None else [handle(n) for n in t.nodes]

    def get_primaries(self) -> list[ClusterNode]:
        t = self._map()
        return [] if t is None else [handle(n) for n in t.primaries]

    def get_replicas(self) -> list[ClusterNode]:
        t = self._map()
        return [] if t is None else [handle(n) for n in t.replicas]

    def get_random_node(self) -> ClusterNode:
        return random.choice(self.get_nodes())

    def get_random_primary_node(self) -> ClusterNode:
        return random.choice(self.get_primaries())

    async def get_keyless_target_node(self, command_name: str) -> ClusterNode:
        """redis.asyncio RedisCluster 8.2's pick for a keyless command: any node while this client
        reads from replicas and the command is read-only, else a random primary."""
        if not self._to_primary and command_name.upper() in READ_COMMANDS:
            return self.get_random_node()
        return self.get_random_primary_node()

    def get_node(self, host: str | None = None, port: int | None = None,
                 node_name: str | None = None) -> ClusterNode | None:
        """The node at host/port (or named "host:port"), None when the map has no such node;
        DataError when given neither, as RedisCluster."""
        name = node_name_for(host, port, node_name)
        if name is None:
            raise DataError("get_node requires one of the following: 1. node name 2. host and port")
        t = self._map()
        node = None if t is None else t.by_name.get(name)
        return None if node is None else handle(node)

    def get_node_from_key(self, key: Any, replica: bool = False) -> ClusterNode | None:
        """The primary serving `key`'s slot (its first replica with `replica=True`; None if it has none)."""
        t = self._map()
        if t is None:
            raise _RedisSlotNotCovered(f'Slot "{slot_of(key)}" is not covered by the cluster.')
        node = node_from_key(t, key, replica)
        return None if node is None else handle(node)

    def get_default_node(self) -> ClusterNode | None:
        """The node keyless commands go to (the first primary until set_default_node() or its
        failure); None before discovery, as RedisCluster."""
        t = self._map()
        return None if t is None else handle(self._default_node(t))

    def set_default_node(self, node: Any) -> None:
        """Send keyless commands to `node` from now on; DataError if the map has no such node."""
        t = self._map()
        name = None if t is None else known_node_name(t, node)
        if name is None:
            raise DataError("The requested node does not exist in the cluster.")
        self._default[:] = [name]

    def replace_default_node(self, target_node: Any = None) -> None:
        """Make `target_node` (default: another primary at random, else another replica) the
        default node, as redis.asyncio's RedisCluster 8.2."""
        if target_node is not None:
            self.set_default_node(target_node)
            return
        t = self._map()
        node = None if t is None else another_default(t, self._default_node(t).name)
        if node is not None:
            self._default[:] = [node.name]

    def _default_node(self, topo: Topology) -> Node:
        """As RedisCluster: the first primary, replaced when it fails."""
        node = pick_default_node(topo, self._default[0] if self._default else None, self._state.node_states.down)
        self._default[:] = [node.name]
        return node
