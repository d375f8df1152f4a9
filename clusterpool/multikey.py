"""Non-atomic multi-key helpers: keys split per slot, sent per node in one round trip, results in key order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from redis.commands.helpers import list_or_args

from .pipeline import ClusterPipeline
from .slots import encode_key, key_slot

if TYPE_CHECKING:
    from .client import ClusterClient


def _by_slot(keys: Iterable[Any]) -> dict[int, list[int]]:
    """Positions of the keys, grouped by slot (first-seen slot order)."""
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(key_slot(encode_key(k)), []).append(i)
    return groups


def mget_nonatomic(client: ClusterClient, keys: Any, *args: Any) -> list[Any]:
    """MGET over any slots: one MGET per slot, all nodes in parallel; values in the order asked."""
    keys = list_or_args(keys, args)
    if not keys:
        return []
    groups = _by_slot(keys)
    pipe = ClusterPipeline(client)
    for positions in groups.values():
        pipe.execute_command("MGET", *[keys[i] for i in positions])
    out: list[Any] = [None] * len(keys)
    for positions, values in zip(groups.values(), pipe.execute()):
        for i, v in zip(positions, values):
            out[i] = v
    return out


def mset_nonatomic(client: ClusterClient, mapping: Mapping[Any, Any]) -> list[bool]:
    """MSET over any slots: one MSET per slot (each atomic on its own); one result per slot."""
    items = list(mapping.items())
    if not items:
        return []
    groups = _by_slot(k for k, _ in items)
    pipe = ClusterPipeline(client)
    for positions in groups.values():
        flat: list[Any] = []
        for i in positions:
            flat.extend(items[i])
        pipe.execute_command("MSET", *flat)
    return pipe.execute()


def split_sum(client: ClusterClient, command: str, keys: list[Any]) -> int:
    """DEL/UNLINK/EXISTS/TOUCH over any slots: one command per slot, pipelined, counts summed."""
    pipe = ClusterPipeline(client)
    for positions in _by_slot(keys).values():
        pipe.execute_command(command, *[keys[i] for i in positions])
    return sum(int(r) for r in pipe.execute())
