"""clusterpool.refreshsteps stepped by hand (no driver, no server): what each step asks,
and the outcome the answers lead to."""

from __future__ import annotations

import asyncio
import random

import pytest

from clusterpool.agreement import View
from clusterpool.refreshsteps import FAST_INTERVAL, FAST_WINDOW, Answers, Candidates, adrive, drive, next_wait, refresh_steps
from clusterpool.topology import PRIMARY, Node, Shard, Topology


def cluster(n: int) -> Topology:
    step = 16384 // n
    shards = []
    for i in range(n):
        end = 16383 if i == n - 1 else (i + 1) * step - 1
        shards.append(Shard(((i * step, end),), Node("h", 1000 + i, PRIMARY, f"id{i}"), (), f"id{i}"))
    return Topology(tuple(shards))


def answers(t: Topology, names, down=()) -> Answers:
    return Answers.of(names, [ConnectionError(f"{n} down") if n in down else View(n, t) for n in names])


def finish(steps, answer: Answers):
    with pytest.raises(StopIteration) as done:
        steps.send(answer)
    return done.value.value


def test_an_agreeing_sample_is_one_step_and_keeps_the_map():
    t = cluster(10)
    names = tuple(t.by_name)
    steps = refresh_steps(t, Candidates(known=names), sample_size=3, max_views=16)
    asked = next(steps)
    assert len(asked) == 3
    outcome = finish(steps, answers(t, asked))
    assert outcome.topology is None and not outcome.unanswered


def test_a_failing_shards_replicas_are_asked_first_and_suspects_never():
    t = cluster(6)
    names = tuple(t.by_name)
    cand = Candidates(first=(names[4],), known=names, suspects=frozenset(names[:3]))
    asked = next(refresh_steps(t, cand, sample_size=2, max_views=16))
    assert asked[0] == names[4] and not set(asked) & set(names[:3])


def test_a_view_missing_a_member_asks_the_others_before_deciding():
    t = cluster(4)
    names = tuple(t.by_name)
    without = Topology(t.shards[:3] + (Shard(t.shards[3].slots, t.shards[0].primary, (), "id0"),))
    steps = refresh_steps(t, Candidates(first=(names[0],), known=names), sample_size=1, max_views=16)
    assert next(steps) == (names[0],)
    more = steps.send(Answers((View(names[0], without),)))
    assert set(more) == set(names[1:])
    outcome = finish(steps, answers(t, more))
    assert outcome.topology is None  # the others still list node 3


def test_max_views_bounds_the_second_round():
    t = cluster(8)
    names = tuple(t.by_name)
    without = Topology(t.shards[:7] + (Shard(t.shards[7].slots, t.shards[0].primary, (), "id0"),))
    steps = refresh_steps(t, Candidates(first=(names[0],), known=names), sample_size=1, max_views=3)
    next(steps)
    more = steps.send(Answers((View(names[0], without),)))
    assert len(more) == 2


def test_with_no_answer_the_startup_addresses_then_the_suspects_are_asked_one_by_one():
    t = cluster(3)
    names = tuple(t.by_name)
    cand = Candidates(known=names[:2], startup=("s:1", "s:2"), suspects=frozenset({names[2]}))
    steps = refresh_steps(None, cand, sample_size=3, max_views=16)
    first = next(steps)
    assert steps.send(answers(t, first, down=first)) == ("s:1",)
    assert steps.send(answers(t, ("s:1",), down=("s:1",))) == ("s:2",)
    assert steps.send(answers(t, ("s:2",), down=("s:2",))) == (names[2],)
    outcome = finish(steps, answers(t, (names[2],)))
    assert outcome.topology == t and len(outcome.answers.errors) == 4


def test_nobody_answering_is_an_unanswered_outcome_with_every_error():
    t = cluster(2)
    names = tuple(t.by_name)
    every = (*names, "s:1")
    outcome = drive(refresh_steps(t, Candidates(known=names, startup=("s:1",)), 3, 16),
                    lambda asked: answers(t, asked, down=every))
    assert outcome.unanswered and outcome.topology is None
    assert len(outcome.answers.errors) == 3
    assert all(any(e.startswith(f"{n}: ") for e in outcome.answers.errors) for n in every)


def test_the_async_driver_takes_the_same_steps():
    t = cluster(5)
    names = tuple(t.by_name)
    cand = Candidates(known=names, startup=("s:1",))
    seen: list[tuple[str, ...]] = []

    def ask(asked):
        seen.append(asked)
        return answers(t, asked, down=names)

    async def aask(asked):
        return ask(asked)

    random.seed(3)
    sync = drive(refresh_steps(None, cand, 2, 16), ask)
    sync_seen, seen[:] = list(seen), []
    random.seed(3)
    outcome = asyncio.run(adrive(refresh_steps(None, cand, 2, 16), aask))
    assert seen == sync_seen and outcome == sync


def test_the_refresh_schedule_is_the_interval_while_the_map_is_sound():
    assert next_wait(30.0, False, 5.0, 10.0) == (30.0, None)


def test_the_refresh_schedule_is_fast_for_a_window_of_trouble_then_once_a_second():
    assert next_wait(30.0, True, None, 10.0) == (FAST_INTERVAL, 10.0)
    assert next_wait(30.0, True, 10.0, 10.0 + FAST_WINDOW - 1) == (FAST_INTERVAL, 10.0)
    assert next_wait(30.0, True, 10.0, 10.0 + FAST_WINDOW + 1) == (1.0, 10.0)
    assert next_wait(0.05, True, 10.0, 10.0 + FAST_WINDOW + 1) == (0.05, 10.0)  # never past the interval
