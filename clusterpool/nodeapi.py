"""redis-py's node API on ClusterClient: node handles, the default node, per-node redis.Redis clients.

How this works: RedisCluster hands out mutable `ClusterNode` objects from its
nodes cache. Our Topology is immutable, so the node API returns small frozen
`ClusterNode` handles built from the current map (host, port, name,
server_type, like redis-py's). A handle's `redis_connection` is a
`redis.Redis` bound to that node, made on first use and closed with the
client. The default node (where RedisCluster sends keyless commands) is a
node name held in one small shared box, so views and the parent agree on it.
A mixin of ClusterClient.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from redis.connection import ConnectionPool
from redis.exceptions import SlotNotCoveredError as _RedisSlotNotCovered

from ._redispy import READ_COMMANDS
from .handles import NodeHandle, another_default, known_node_name, node_from_key, node_name_for, node_name_of, pick_default_node
from .connection import NodeConnection, SSLNodeConnection
from .topology import Node, Topology

if TYPE_CHECKING:
    from .core import Core


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class ClusterNode(NodeHandle):
    """A sync client's node handle: a NodeHandle with `redis_connection`, as redis-py's ClusterNode."""

    owner: NodeAPIMixin = field(repr=False)

    @property
    def redis_connection(self) -> redis.Redis:
        """A redis.Redis bound to this node (made on first use, closed with the client)."""
        return self.owner.get_redis_connection(self)


class NodeAPIState:
    """State every view of one client shares: the default node and the per-node redis.Redis clients."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.default: str | None = None
        self.redis: dict[str, redis.Redis] = {}


class NodeAPIMixin:
    """get_nodes(), get_node(), get_default_node() ... as on redis-py's RedisCluster."""

    core: Core
    _shared: NodeAPIState
    read_from_replicas: bool

    if TYPE_CHECKING:
        def determine_slot(self, *args: Any) -> int: ...
        def pick_node(self, topo: Topology, slot: int, readonly: bool) -> Node: ...

    def _handle(self, node: Node) -> ClusterNode:
        return ClusterNode(node.host, node.port, node.role, self)

    def get_nodes(self) -> list[ClusterNode]:
        """Every node of the current map."""
        return [self._handle(n) for n in self.core.ensure().nodes]

    def get_primaries(self) -> list[ClusterNode]:
        return [self._handle(n) for n in self.core.ensure().primaries]

    def get_replicas(self) -> list[ClusterNode]:
        return [self._handle(n) for n in self.core.ensure().replicas]

    def get_random_node(self) -> ClusterNode:
        return random.choice(self.get_nodes())

    def get_node(self, host: str | None = None, port: int | None = None,
                 node_name: str | None = None) -> ClusterNode | None:
        """The node at host/port (or named "host:port"), None when the map has no such node."""
        node_name = node_name_for(host, port, node_name)
        if node_name is None:
            return None
        node = self.core.ensure().by_name.get(node_name)
        return None if node is None else self._handle(node)

    def get_node_from_key(self, key: Any, replica: bool = False) -> ClusterNode | None:
        """The primary serving `key`'s slot (its first replica with `replica=True`; None if it has none)."""
        node = node_from_key(self.core.ensure(), key, replica)
        return None if node is None else self._handle(node)

    def get_default_node(self) -> ClusterNode:
        """The node keyless commands go to (the first primary until set_default_node() or its failure)."""
        return self._handle(self.default_node(self.core.ensure()))

    def get_random_primary_node(self) -> ClusterNode:
        return random.choice(self.get_primaries())

    def get_keyless_target_node(self, command_name: str) -> ClusterNode:
        """RedisCluster's pick for a keyless command: any node while reads go to replicas and the
        command is read-only, else a random primary."""
        if self.read_from_replicas and command_name.upper() in READ_COMMANDS:
            return self.get_random_node()
        return self.get_random_primary_node()

    def get_random_primary_or_all_nodes(self, command_name: str) -> ClusterNode:
        """RedisCluster 8.1's name for get_keyless_target_node (8.2 deprecates it)."""
        return self.get_keyless_target_node(command_name)

    def get_nodes_from_slot(self, command: str, *args: Any) -> list[ClusterNode]:
        """[the node a command with these arguments goes to now] (RedisCluster's helper)."""
        slot = self.determine_slot(*args)
        shard = self.core.ensure().slot_table[slot]
        if shard is None or shard.primary is None:
            raise _RedisSlotNotCovered(f'Slot "{slot}" is not covered by the cluster.')
        return [self._handle(self.pick_node(self.core.ensure(), slot, command.upper() in READ_COMMANDS))]

    def replace_default_node(self, target_node: Any = None) -> None:
        """Make `target_node` (default: another primary, chosen at random) the default node."""
        if target_node is not None:
            self.set_default_node(target_node)
            return
        topo = self.core.ensure()
        node = another_default(topo, self.default_node(topo).name)
        if node is not None:
            self._shared.default = node.name

    def set_default_node(self, node: Any) -> bool:
        """Send keyless commands to `node` from now on; False (and no change) if the map has no such node."""
        name = known_node_name(self.core.ensure(), node)
        if name is None:
            return False
        self._shared.default = name
        return True

    def default_node(self, topo: Topology) -> Node:
        node = pick_default_node(topo, self._shared.default, self.core.node_states.down)
        self._shared.default = node.name
        return node

    def get_redis_connection(self, node: Any) -> redis.Redis:
        """A redis.Redis bound to `node` (a handle or "host:port"), with this client's connection options."""
        name = node_name_of(node)
        shared = self._shared
        r = shared.redis.get(name)
        if r is not None:
            return r
        with shared.lock:
            r = shared.redis.get(name)
            if r is None:
                host, _, port = name.rpartition(":")
                core = self.core
                kwargs = {**core.conn_kwargs, **core.node_kwargs.get(name, {})}
                cls = SSLNodeConnection if core.config.ssl else NodeConnection
                r = redis.Redis(connection_pool=ConnectionPool(connection_class=cls, host=host, port=int(port), **kwargs))
                shared.redis = {**shared.redis, name: r}
                core.closables.add(r.connection_pool)  # its sockets close with the client
        return r

    def disconnect_connection_pools(self) -> None:
        """Close every idle pooled connection now and in-use ones when they are returned."""
        for st in list(self.core.nodes.values()):
            st.pool.disconnect_all()
        for r in list(self._shared.redis.values()):
            r.connection_pool.disconnect()

    def keyspace_notifications(self, key_prefix: Any = None, ignore_subscribe_messages: bool = True) -> Any:
        """redis-py's ClusterKeyspaceNotifications over every primary (made from get_primaries()
        and get_redis_connection(), as on RedisCluster)."""
        from redis.keyspace_notifications import ClusterKeyspaceNotifications

        return ClusterKeyspaceNotifications(
            self, key_prefix=key_prefix, ignore_subscribe_messages=ignore_subscribe_messages)  # type: ignore[arg-type]

    def monitor(self, target_node: Any = None) -> Any:
        """redis-py's Monitor on `target_node` (default: the default node)."""
        node = target_node if target_node is not None else self.get_default_node()
        return self.get_redis_connection(node).monitor()
