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

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from redis.cluster import RedisCluster
from ._redispy import SLOT_ID

DEFAULT_NODE = RedisCluster.DEFAULT_NODE
PRIMARIES = RedisCluster.PRIMARIES
REPLICAS = RedisCluster.REPLICAS
ALL_NODES = RedisCluster.ALL_NODES
RANDOM = RedisCluster.RANDOM
SLOT = SLOT_ID
NODE_FLAGS = frozenset(RedisCluster.NODE_FLAGS)

# Cluster-wide where RedisCluster asks one node: the cluster's total / union / every node's
# setting, which is what the caller means on a cluster. Same reply shape as RedisCluster's.
OURS: Mapping[str, str] = MappingProxyType({
    "DBSIZE": PRIMARIES,           # RedisCluster: the default node's count only
    "KEYS": PRIMARIES,             # RedisCluster: the default node's keys only
    "PING": PRIMARIES,             # True only when every primary answers
    "INFO": ALL_NODES,             # {node: info}: the one shape difference (README table)
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
