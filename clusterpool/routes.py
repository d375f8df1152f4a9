"""Where a keyless command goes and what shape its replies come back in: RedisCluster's table.

How this works: redis-py's RedisCluster decides per command name from two
tables, `COMMAND_FLAGS` (which node group: the default node, every primary,
every node, a random node, the node owning a slot given as argument) and
`RESULT_CALLBACKS` (how the per-node replies become one value). We read those
same tables as data, so a command goes where RedisCluster sends it and comes
back in its shape. `OURS` lists the few commands where we deliberately ask
more nodes (the README's differences table names them); their replies keep
RedisCluster's shape. Pure: no I/O, unit-tested without a server.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any

from redis.cluster import RedisCluster

from . import errors
from ._redispy import SLOT_ID
from .batchrules import missing_key_message
from .commands import ALL_NODES as POLICY_ALL_NODES
from .commands import ALL_SHARDS as POLICY_ALL_SHARDS
from .commands import CONNECTION_STATE, SPLIT_SUM, CommandInfo, CommandTable
from .handles import node_name_of
from .resp import command_name
from .slots import slot_of
from .topology import Node, Topology

DEFAULT_NODE = RedisCluster.DEFAULT_NODE
PRIMARIES = RedisCluster.PRIMARIES
REPLICAS = RedisCluster.REPLICAS
ALL_NODES = RedisCluster.ALL_NODES
RANDOM = RedisCluster.RANDOM
SLOT = SLOT_ID
NODE_FLAGS = frozenset(RedisCluster.NODE_FLAGS)

# Cluster-wide where RedisCluster asks one node: the cluster's total / union / every node's
# setting, which is what the caller means on a cluster. Same reply shape as RedisCluster's, so
# INFO is not here: code reads `info()["redis_version"]` or waits on `info("persistence")`
# (redis-py's own BGSAVE test) from the default node's one dict; `target_nodes="all"` asks all.
OURS: Mapping[str, str] = MappingProxyType({
    "DBSIZE": PRIMARIES,           # RedisCluster: the default node's count only
    "KEYS": PRIMARIES,             # RedisCluster: the default node's keys only
    "PING": PRIMARIES,             # True only when every primary answers
    "CONFIG SET": ALL_NODES,       # a setting applied to one node only is rarely meant
    "CONFIG RESETSTAT": ALL_NODES,
    "CONFIG REWRITE": ALL_NODES,
    "SCRIPT LOAD": ALL_NODES,      # replicas too: EVALSHA may be read from a replica
    "SCRIPT FLUSH": ALL_NODES,
    "SCRIPT EXISTS": ALL_NODES,
})

TARGETS: Mapping[str, str] = MappingProxyType({**RedisCluster.COMMAND_FLAGS, **OURS})

# Commands with key specs that may legitimately carry no key (RedisCluster sends them to a random slot).
ZERO_KEYS_OK = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})


def route_name(info_name: str) -> str:
    """RedisCluster's spelling of one of our command-table names ("latency|latest" -> "LATENCY LATEST")."""
    return info_name.replace("|", " ").upper()


def target_of(name: str) -> str | None:
    """The node group a keyless command goes to, by RedisCluster's name for it; None when it has none."""
    return TARGETS.get(name)


def merges(name: str) -> bool:
    """Whether RedisCluster folds this command's per-node replies into one value (even from one node)."""
    return name in RedisCluster.RESULT_CALLBACKS


def shape(name: str, replies: Mapping[str, Any], **options: Any) -> Any:
    """One value from {node name: parsed reply}, as RedisCluster's `_process_result` makes it."""
    cb = RedisCluster.RESULT_CALLBACKS.get(name)
    if cb is not None:
        return cb(name, dict(replies), **options)
    if len(replies) == 1:
        return next(iter(replies.values()))
    return dict(replies)


# Connection-state commands carried out instead of refused: command-table name -> method(argv, options).
STATE_COMMANDS: Mapping[str, str] = MappingProxyType({
    "client|setname": "_rename_command",
    "client|setinfo": "_rename_command",
    "readonly": "_readonly_command",
    "readwrite": "_readwrite_command",
})


class NodeFlags:
    """RedisCluster's node-flag class attributes (`client.PRIMARIES` ...), on both clients."""

    PRIMARIES = PRIMARIES
    REPLICAS = REPLICAS
    ALL_NODES = ALL_NODES
    RANDOM = RANDOM
    DEFAULT_NODE = DEFAULT_NODE


class Via(str, Enum):
    """How a command that is not on the single-key fast path is carried out."""

    STATE = "state"  # a connection-state command the client carries out itself (dropin.py)
    TARGETS = "targets"  # to the nodes `targets` names (a node flag or nodes), replies shaped by `name`
    SLOT = "slot"  # to the node serving `slot`
    NODES = "nodes"  # to every primary or every node (request policy), merged by the response policy
    SPLIT = "split"  # split per slot, replies summed (DEL, EXISTS ... across slots)
    DEFAULT = "default"  # to the default node


@dataclass(frozen=True, slots=True)
class Route:
    """Where a command goes (pure), decided by `route`; the sync and asyncio drivers carry it out."""

    via: Via
    info: CommandInfo
    argv: list[Any]
    name: str
    targets: Any = None
    slot: int | None = None
    readonly: bool = False
    keys: tuple[Any, ...] = ()


def route(table: CommandTable, args: Sequence[Any], targets: Any, refuses_writes: bool) -> Route:
    """Route a command as RedisCluster would: connection-state commands, explicit `targets`,
    RedisCluster's routing table, the keys' slot, request-policy tips, else the default node.
    Raises before anything is sent for cross-slot keys, a missing key, state commands a shared
    pool cannot keep, and writes on a view that refuses them."""
    info, argv = table.resolve(args)
    if info.name in STATE_COMMANDS:
        return Route(Via.STATE, info, argv, info.name, targets=targets)
    if info.name in CONNECTION_STATE:
        raise errors.ConfigurationError(
            f"{command_name(args)} changes connection state, which a shared cluster pool cannot keep: "
            "use client.pipeline(transaction=True) for MULTI/EXEC/WATCH, client.pubsub() for SUBSCRIBE"
        )
    name = route_name(info.name) if info.name else command_name(args)
    if targets is not None:
        return Route(Via.TARGETS, info, argv, name, targets=targets)
    flag = target_of(name)
    if flag is not None:  # RedisCluster's table decides before keys are looked at, as it does
        if flag == SLOT:
            return Route(Via.SLOT, info, argv, name, slot=int(argv[2]))
        if refuses_writes and info.write:
            raise write_refused(args)
        return Route(Via.TARGETS, info, argv, name, targets=flag)
    keys = info.keys(argv)
    if keys:
        slots = {slot_of(k) for k in keys}
        if refuses_writes and not info.readonly:
            raise write_refused(args)
        if len(slots) == 1:
            return Route(Via.SLOT, info, argv, name, slot=slots.pop(), readonly=info.readonly)
        if info.name in SPLIT_SUM:
            return Route(Via.SPLIT, info, argv, name, keys=tuple(keys))
        raise errors.CrossSlotError(
            f"{name} - all keys must map to the same key slot: they hash to {len(slots)} slots "
            f"({sorted(slots)[:8]}...). Use a {{hash tag}} in the key names, "
            "or the non-atomic helpers (mget_nonatomic, mset_nonatomic)."
        )
    if info.key_specs and info.name not in ZERO_KEYS_OK:
        raise missing_key_error(args)
    if info.request_policy in (POLICY_ALL_SHARDS, POLICY_ALL_NODES):
        return Route(Via.NODES, info, argv, name)
    if refuses_writes and info.write:
        raise write_refused(args)
    return Route(Via.DEFAULT, info, argv, name)


def fanout_nodes(topo: Topology, info: CommandInfo) -> list[Node]:
    """The nodes a Via.NODES command goes to: every primary (all_shards) or every usable node."""
    if info.request_policy == POLICY_ALL_SHARDS:
        return list(topo.primaries)
    return [n for n in topo.nodes if n.usable]


def target_nodes(topo: Topology, targets: Any, default: Callable[[], Node]) -> list[Node]:
    """The nodes of a `target_nodes=` value in `topo`: a node flag, a node (handle, ClusterNode,
    "host:port"), or a list/tuple/dict of nodes; `default()` gives the default node."""
    if isinstance(targets, str) and targets.lower() in NODE_FLAGS:
        flag = targets.lower()
        if flag == PRIMARIES:
            return list(topo.primaries)
        if flag == REPLICAS:
            return list(topo.replicas)
        if flag == ALL_NODES:
            return [n for n in topo.nodes if n.usable]
        if flag == RANDOM:
            return [random.choice([n for n in topo.nodes if n.usable] or list(topo.nodes))]
        return [default()]
    items = targets.values() if isinstance(targets, dict) else (
        targets if isinstance(targets, list | tuple) else [targets])
    out: list[Node] = []
    for t in items:
        name = node_name_of(t)
        node = topo.by_name.get(name)
        if node is None:
            raise errors.ConfigurationError(f"target node {name!r} is not in the cluster's map: see client.nodes()")
        out.append(node)
    return out


def write_refused(args: Sequence[Any]) -> errors.WriteOnReaderError:
    """The error a view that refuses writes raises, before anything is sent."""
    return errors.WriteOnReaderError(
        f"{command_name(args)} may write: client.reader only sends read-only commands; use client.writer or the client"
    )


def missing_key_error(args: Sequence[Any]) -> errors.MissingKeyError:
    """RedisCluster's error (and wording) for a keyed command without its key."""
    return errors.MissingKeyError(missing_key_message(args))
