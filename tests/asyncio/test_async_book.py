"""The pure bookkeeping of a node's connections (clusterpool.asyncio.book): no server, no loop."""

from __future__ import annotations

import itertools

import pytest

from clusterpool.asyncio.book import Assignment, SharedPick, assign, pick_shared


def test_no_shared_connection_opens_one():
    assert pick_shared([], opening=False, limit=2, grow_at=8) == SharedPick(None, True)


def test_no_shared_connection_while_one_is_opening_waits_for_it():
    assert pick_shared([], opening=True, limit=2, grow_at=8) == SharedPick(None, False)


def test_the_least_pending_connection_is_picked():
    assert pick_shared([5, 1, 3], opening=False, limit=4, grow_at=8) == SharedPick(1, False)


def test_ties_go_to_the_first():
    assert pick_shared([2, 2], opening=False, limit=4, grow_at=8).index == 0


def test_all_busy_opens_another_but_keeps_using_the_least_busy():
    assert pick_shared([9, 8], opening=False, limit=3, grow_at=8) == SharedPick(1, True)


def test_all_busy_at_the_limit_does_not_grow():
    assert pick_shared([9, 8], opening=False, limit=2, grow_at=8) == SharedPick(1, False)


def test_all_busy_while_opening_does_not_open_a_second():
    assert pick_shared([9], opening=True, limit=4, grow_at=8) == SharedPick(0, False)


@pytest.mark.parametrize("idle,total,limit,waiting", [
    (i, t, lim, w)
    for i, t, lim, w in itertools.product(range(4), range(6), range(1, 5), range(6)) if i <= t
])
def test_assign_never_exceeds_the_limit_and_prefers_idle(idle, total, limit, waiting):
    a = assign(idle=idle, total=total, limit=limit, waiting=waiting)
    assert a.reuse == min(idle, waiting)
    assert a.reuse + a.open <= waiting
    assert total + a.open <= max(total, limit)
    # nobody is left waiting while a connection could be handed out or opened
    if a.reuse + a.open < waiting:
        assert a.reuse == idle and total + a.open >= limit


def test_assign_with_nobody_waiting_does_nothing():
    assert assign(idle=2, total=3, limit=4, waiting=0) == Assignment(0, 0)


@pytest.mark.parametrize("state", [dict(idle=3, total=2, limit=4, waiting=1), dict(idle=-1, total=0, limit=1, waiting=0)])
def test_assign_refuses_an_inconsistent_state(state):
    with pytest.raises(ValueError):
        assign(**state)
