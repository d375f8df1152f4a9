"""Commands that are not a single key's: keyless commands, multi-node fan-out and merging,
`target_nodes=`, multi-key commands (one slot, split, or refused), and SCAN across primaries.

Order of decisions in `_dispatch`, as RedisCluster's: connection-state commands
(carried out by dropin.py or refused), explicit `target_nodes`, RedisCluster's
routing table (routes.py), then the keys' slot; keyless commands it has no
route for follow the server's request-policy tips, else the default node.
A mixin of ClusterClient, kept apart from the single-key hot path in client.py.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import errors, routes
from .commands import CommandInfo
from .routes import STATE_COMMANDS, Via, fanout_nodes, missing_key_error, route, target_nodes
from .merge import merge
from .slots import SLOT_COUNT, slot_of
from .topology import Node, Topology
from .resp import command_name

if TYPE_CHECKING:
    from .core import Core



class FanoutMixin:
    """The slow path of `execute_command` and the cluster-aware SCAN."""

    core: Core
    refuses_writes: bool

    if TYPE_CHECKING:
        def _run(self, node: Node | str, info: CommandInfo, slot: int | None, args: Sequence[Any],
                 options: dict[str, Any], asking: bool = False) -> Any: ...
        def pick_node(self, topo: Topology, slot: int, readonly: bool) -> Node: ...
        def refuse_write(self, args: Sequence[Any]) -> None: ...
        def default_node(self, topo: Topology) -> Node: ...

    def _dispatch(self, args: Sequence[Any], options: dict[str, Any]) -> Any:
        core = self.core
        table = core.table
        assert table is not None
        r = route(table, args, options.get("target_nodes"), self.refuses_writes)
        info = r.info
        if r.via is Via.STATE:  # these read target_nodes themselves
            return getattr(self, STATE_COMMANDS[info.name])(r.argv, options)
        options.pop("target_nodes", None)
        if r.via is Via.TARGETS:
            return self._on_targets(r.name, self.resolve_targets(r.targets), info, args, options)
        if r.via is Via.SLOT:
            assert r.slot is not None
            return self._run(self.pick_node(core.ensure(), r.slot, r.readonly), info, r.slot, args, options)
        if r.via is Via.SPLIT:
            return self._split_sum(info, args[0], list(r.keys), options)
        topo = core.ensure()
        if r.via is Via.NODES:
            return merge(info.response_policy, self._on_nodes(fanout_nodes(topo, info), info, args, options))
        # anything else without keys: the default node, as RedisCluster's keyless commands
        return self._run(self.default_node(topo), info, None, args, options)

    def determine_slot(self, *args: Any) -> int:
        """The slot a command with these arguments goes to; RedisClusterException when it has no key
        or its keys are in several slots (RedisCluster's helper)."""
        table = self.core.table
        if table is None:
            self.core.ensure()
            table = self.core.table
        assert table is not None
        info, argv = table.resolve(args)
        name = routes.route_name(info.name) if info.name else command_name(args)
        if routes.target_of(name) == routes.SLOT:
            return int(argv[2])
        keys = info.keys(argv)
        if not keys:
            if info.name in routes.ZERO_KEYS_OK:
                return random.randrange(SLOT_COUNT)
            raise missing_key_error(args)
        slots = {slot_of(k) for k in keys}
        if len(slots) != 1:
            raise errors.CrossSlotError(f"{name} - all keys must map to the same key slot")
        return slots.pop()

    def resolve_targets(self, targets: Any) -> list[Node]:
        """The nodes of a `target_nodes=` value: a node flag, a node (handle, ClusterNode, "host:port"),
        or a list/tuple/dict of nodes."""
        topo = self.core.ensure()
        return target_nodes(topo, targets, lambda: self.default_node(topo))

    def _on_targets(self, name: str, nodes: list[Node], info: CommandInfo, args: Sequence[Any],
                    options: dict[str, Any]) -> Any:
        """The command on each node, replies shaped as RedisCluster shapes them."""
        if len(nodes) == 1 and not routes.merges(name):
            return self._run(nodes[0], info, None, args, options)
        return routes.shape(name, self._on_nodes(nodes, info, args, options))

    def _on_nodes(self, nodes: list[Node], info: CommandInfo, args: Sequence[Any],
                  options: dict[str, Any]) -> dict[str, Any]:
        """The command on each node; replies keyed by node name, in the nodes' order."""
        return {n.name: self._run(n, info, None, args, dict(options)) for n in nodes}

    def _split_sum(self, info: CommandInfo, head: Any, keys: list[Any], options: dict[str, Any]) -> int:
        from .multikey import split_sum

        return split_sum(self, head, keys)  # type: ignore[arg-type]  # self is the ClusterClient

    # ---------------------------------------------------------------- cluster-aware overrides

    def scan(self, cursor: int = 0, match: Any = None, count: int | None = None, _type: str | None = None,
             **kwargs: Any) -> Any:
        """SCAN on every primary (or `target_nodes`): ({node: cursor}, keys), like RedisCluster."""
        pieces: list[Any] = [cursor]
        if match is not None:
            pieces += [b"MATCH", match]
        if count is not None:
            pieces += [b"COUNT", count]
        if _type is not None:
            pieces += [b"TYPE", _type]
        targets = kwargs.pop("target_nodes", None)
        nodes = self.resolve_targets(targets if targets is not None else "primaries")
        info = self.core.table.get("scan")  # type: ignore[union-attr]
        assert info is not None
        cursors: dict[str, int] = {}
        keys: list[Any] = []
        for n in nodes:
            cur, data = self._run(n, info, None, ("SCAN", *pieces), dict(kwargs))
            cursors[n.name] = int(cur)
            keys.extend(data)
        return cursors, keys

    def scan_iter(self, match: Any = None, count: int | None = None, _type: str | None = None,
                  **kwargs: Any) -> Iterator[Any]:
        """Every key of every primary, node by node (each node's cursor followed to 0)."""
        targets = kwargs.pop("target_nodes", None)
        for node in self.resolve_targets(targets if targets is not None else "primaries"):
            cursor = 0
            while True:
                cursors, data = self.scan(cursor, match, count, _type, target_nodes=node.name, **kwargs)
                yield from data
                cursor = cursors[node.name]
                if cursor == 0:
                    break

    def slot(self, key: Any) -> int:
        """The slot of `key`, computed locally (no round trip)."""
        return slot_of(key)

    keyslot = slot  # RedisCluster's name
