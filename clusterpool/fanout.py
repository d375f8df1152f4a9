"""Commands that are not a single key's: keyless commands, multi-node fan-out and merging,
`target_nodes=`, multi-key commands (one slot, split, or refused), and SCAN across primaries.

A mixin of ClusterClient, kept apart from the single-key hot path in client.py.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import errors
from .commands import ALL_NODES, ALL_SHARDS, CONNECTION_STATE, CommandInfo
from .merge import merge
from .slots import slot_of
from .topology import Node, Topology
from .resp import command_name

if TYPE_CHECKING:
    from .core import Core

# Commands redis-py's RedisCluster splits per slot instead of refusing (non-atomic; summed).
SPLIT_SUM = frozenset({"del", "unlink", "exists", "touch"})
NODE_FLAGS = ("primaries", "replicas", "all", "random", "default-node")


class FanoutMixin:
    """The slow path of `execute_command` and the cluster-aware SCAN."""

    _core: Core
    _refuse_writes: bool

    if TYPE_CHECKING:
        def _run(self, node: Node | str, info: CommandInfo, slot: int | None, args: Sequence[Any],
                 options: dict[str, Any], asking: bool = False) -> Any: ...
        def _pick(self, topo: Topology, slot: int, readonly: bool) -> Node: ...
        def _refuse(self, args: Sequence[Any]) -> None: ...

    def _dispatch(self, args: Sequence[Any], options: dict[str, Any]) -> Any:
        core = self._core
        table = core.table
        assert table is not None
        info, argv = table.resolve(args)
        if info.name in CONNECTION_STATE:
            raise errors.ConfigurationError(
                f"{command_name(args)} changes connection state, which a shared cluster pool cannot keep: "
                "use client.pipeline(transaction=True) for MULTI/EXEC/WATCH, client.pubsub() for SUBSCRIBE"
            )
        targets = options.pop("target_nodes", None)
        if targets is not None:
            return self._on_targets(self._resolve_targets(targets), info, args, options)
        keys = info.keys(argv)
        if keys:
            slots = {slot_of(k) for k in keys}
            if self._refuse_writes and not info.readonly:
                self._refuse(args)
            if len(slots) == 1:
                slot = slots.pop()
                return self._run(self._pick(self._core.ensure(), slot, info.readonly), info, slot, args, options)
            if info.name in SPLIT_SUM:
                return self._split_sum(info, args[0], keys, options)
            raise errors.CrossSlotError(
                f"{command_name(args)} keys hash to {len(slots)} different slots ({sorted(slots)[:8]}...): "
                "a cluster command must keep its keys in one slot. Use a {hash tag} in the key names, "
                "or the non-atomic helpers (mget_nonatomic, mset_nonatomic)."
            )
        policy = info.request_policy
        topo = core.ensure()
        if policy in (ALL_SHARDS, ALL_NODES):
            nodes = list(topo.primaries) if policy == ALL_SHARDS else [n for n in topo.nodes if n.usable]
            return merge(info.response_policy, self._on_nodes(nodes, info, args, options))
        if self._refuse_writes and info.write:
            self._refuse(args)
        # DEFAULT (and anything without keys): one primary, as RedisCluster's default node
        return self._run(self._default_node(topo), info, None, args, options)

    def _default_node(self, topo: Topology) -> Node:
        primaries = topo.primaries
        if not primaries:
            raise errors.SlotNotCoveredError("the cluster's map has no primary")
        down = self._core.node_states.down
        alive = [p for p in primaries if p.name not in down] or list(primaries)
        return random.choice(alive)

    def _resolve_targets(self, targets: Any) -> list[Node]:
        topo = self._core.ensure()
        if isinstance(targets, str) and targets.lower() in NODE_FLAGS:
            flag = targets.lower()
            if flag == "primaries":
                return list(topo.primaries)
            if flag == "replicas":
                return list(topo.replicas)
            if flag == "all":
                return [n for n in topo.nodes if n.usable]
            return [self._default_node(topo)]
        items = targets.values() if isinstance(targets, dict) else (
            targets if isinstance(targets, list | tuple) else [targets])
        out: list[Node] = []
        for t in items:
            name = t if isinstance(t, str) else getattr(t, "name", None) or f"{t.host}:{t.port}"
            node = topo.by_name.get(name)
            if node is None:
                raise errors.ConfigurationError(f"target node {name!r} is not in the cluster's map: see client.nodes()")
            out.append(node)
        return out

    def _on_targets(self, nodes: list[Node], info: CommandInfo, args: Sequence[Any], options: dict[str, Any]) -> Any:
        if len(nodes) == 1:
            return self._run(nodes[0], info, None, args, options)
        return merge(info.response_policy, self._on_nodes(nodes, info, args, options))

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
        nodes = self._resolve_targets(targets if targets is not None else "primaries")
        info = self._core.table.get("scan")  # type: ignore[union-attr]
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
        for node in self._resolve_targets(targets if targets is not None else "primaries"):
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
