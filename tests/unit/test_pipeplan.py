"""pipeplan: a sync pipeline's queue planned without a server (slots, refusals, splits)."""

from __future__ import annotations

import pytest

from clusterpool import errors
from clusterpool.commands import CommandTable
from clusterpool.pipeplan import plan_all
from clusterpool.queued import Queued
from clusterpool.slots import key_slot

TABLE = CommandTable.bundled_with(None)


def queued(*args):
    return Queued(args, {})


def two_slot_keys():
    a = "k:a"
    b = next(f"k:b{i}" for i in range(100) if key_slot(f"k:b{i}".encode()) != key_slot(a.encode()))
    return a, b


def test_each_command_gets_its_keys_slot_and_keyless_ones_none():
    queue = [queued("SET", "a", 1), queued("MGET", "{t}x", "{t}y"), queued("PING")]
    assert plan_all(queue, TABLE, False) is False
    assert [q.slot for q in queue] == [key_slot(b"a"), key_slot(b"t"), None]
    assert [q.info.name for q in queue] == ["set", "mget", "ping"]


def test_a_count_command_across_slots_is_split_into_one_part_per_slot():
    a, b = two_slot_keys()
    q = queued("EXISTS", a, b)
    assert plan_all([q], TABLE, False) is True
    assert sorted(p.slot for p in q.parts) == sorted({key_slot(a.encode()), key_slot(b.encode())})


def test_other_multi_key_commands_across_slots_are_refused_before_sending():
    with pytest.raises(errors.CrossSlotError):
        plan_all([queued("MGET", *two_slot_keys())], TABLE, False)


def test_a_view_that_refuses_writes_refuses_a_queued_write():
    with pytest.raises(errors.WriteOnReaderError):
        plan_all([queued("GET", "a"), queued("SET", "a", 1)], TABLE, True)


def test_planned_commands_are_left_as_they_are():
    q = queued("SET", "a", 1)
    plan_all([q], TABLE, False)
    q.slot = 7
    plan_all([q], TABLE, False)
    assert q.slot == 7
