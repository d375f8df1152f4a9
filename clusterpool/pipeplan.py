"""Planning a sync pipeline's queue (pure: no I/O): each queued command's slot, checked as
RedisCluster checks it, and DEL/UNLINK/EXISTS/TOUCH across slots split into one part per slot.

The common case, one key at a fixed place, is inline in `plan_all`: on a 10k pipeline a
function call per command is a measurable part of the client's time. Which node each slot
goes to is decided later, per round, against the map of that round (pipeline.py).
"""

from __future__ import annotations

from . import batchrules
from .commands import SPLIT_SUM, CommandTable
from .queued import Queued
from .routes import write_refused
from .slots import encode_key, key_slot, slot_of

__all__ = ["plan", "plan_all"]


def plan(q: Queued, table: CommandTable, refuses_writes: bool) -> None:
    """Give `q` its command info and slot (None: keyless), or its parts when split per slot;
    raises before anything is sent for keys in several slots and writes a view refuses."""
    cached = table.resolved.get(q.args[0])
    if cached is not None and not cached[1] and cached[0].single_key and len(q.args) > cached[0].single_key:
        info = q.info = cached[0]  # one key at a fixed place: the common case, as in execute_command
        key = q.args[info.single_key]
        q.slot = key_slot(key if type(key) is bytes else encode_key(key))
        if refuses_writes and not info.readonly:
            raise write_refused(q.args)
        return
    info, argv = table.resolve(q.args)
    q.info = info
    keys = info.keys(argv)
    if not keys:
        q.slot = None
        return
    slots = {slot_of(k) for k in keys}
    if refuses_writes and not info.readonly:
        raise write_refused(q.args)
    if len(slots) > 1:
        if info.name not in SPLIT_SUM or len(keys) != len(q.args) - 1:
            raise batchrules.keys_cross_slot(q.args)  # RedisCluster's words; a CrossSlotError too
        q.parts = []  # one command per slot, sent as any other; the counts summed (pipeline's `_fold`)
        for slot, group in batchrules.by_slot(keys).items():
            part = Queued((q.args[0], *group), dict(q.options))
            part.info, part.slot = info, slot
            q.parts.append(part)
        return
    q.slot = slots.pop()


def plan_all(queue: list[Queued], table: CommandTable | None, refuses_writes: bool) -> bool:
    """`plan` every command not planned yet; True when one was split per slot (`q.parts`)."""
    assert table is not None
    resolved = table.resolved
    split = False
    for q in queue:
        if q.info is not None:
            continue
        args = q.args
        cached = resolved.get(args[0])
        if cached is not None and not cached[1]:
            info = cached[0]
            idx = info.single_key
            if idx and len(args) > idx:
                key = args[idx]
                q.info = info
                q.slot = key_slot(key if type(key) is bytes else encode_key(key))
                if refuses_writes and not info.readonly:
                    raise write_refused(args)
                continue
        plan(q, table, refuses_writes)
        split = split or q.parts is not None
    return split
