"""Non-atomic multi-key helpers: keys split per slot, sent per node in one round trip, results in key order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any


from ._redispy import Encoder, list_or_args
from . import errors
from .commands import CommandInfo
from .pipeline import ClusterPipeline
from .slots import slot_of

if TYPE_CHECKING:
    from .interfaces import Dispatcher


_ENCODER = Encoder("utf-8", "strict", False)


def _slot(key: Any) -> int:
    try:
        return slot_of(key)
    except TypeError:
        _ENCODER.encode(key)  # raises redis-py's DataError, as RedisCluster's helpers do
        raise


def _by_slot(keys: Iterable[Any]) -> dict[int, list[int]]:
    """Positions of the keys, grouped by slot (first-seen slot order)."""
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(_slot(k), []).append(i)
    return groups


def _info(client: Dispatcher, name: str) -> CommandInfo:
    table = client.core.ensure() and client.core.table
    info = table.get(name) if table else None
    if info is None:
        raise errors.ClusterPoolError(f"the server does not know {name.upper()}")
    return info


def mget_nonatomic(client: Dispatcher, keys: Any, *args: Any) -> list[Any]:
    """MGET over any slots: one MGET per slot, all nodes in parallel; values in the order asked."""
    keys = list_or_args(keys, args)
    if not keys:
        return []
    groups = _by_slot(keys)
    pipe = ClusterPipeline(client)
    info = _info(client, "mget")
    for slot, positions in groups.items():
        pipe.queue_planned(("MGET", *[keys[i] for i in positions]), info, slot)
    out: list[Any] = [None] * len(keys)
    for positions, values in zip(groups.values(), pipe.execute()):
        for i, v in zip(positions, values):
            out[i] = v
    return out


def mset_nonatomic(client: Dispatcher, mapping: Mapping[Any, Any]) -> list[bool]:
    """MSET over any slots: one MSET per slot (each atomic on its own); one result per slot."""
    items = list(mapping.items())
    if not items:
        return []
    groups = _by_slot(k for k, _ in items)
    pipe = ClusterPipeline(client)
    info = _info(client, "mset")
    for slot, positions in groups.items():
        flat: list[Any] = []
        for i in positions:
            flat.extend(items[i])
        pipe.queue_planned(("MSET", *flat), info, slot)
    return pipe.execute()


def split_sum(client: Dispatcher, command: str, keys: list[Any]) -> int:
    """DEL/UNLINK/EXISTS/TOUCH over any slots: one command per slot, pipelined, counts summed."""
    pipe = ClusterPipeline(client)
    info = _info(client, str(command))
    for slot, positions in _by_slot(keys).items():
        pipe.queue_planned((command, *[keys[i] for i in positions]), info, slot)
    return sum(int(r) for r in pipe.execute())
