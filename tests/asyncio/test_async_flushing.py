"""The flush rule of one loop's shared connections (clusterpool.asyncio.flushing), on whichever
event loop the suite runs on: stand-in connections record when they are flushed."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from clusterpool.asyncio.flushing import Flusher, flusher_of

pytestmark = pytest.mark.asyncio


class Recorder:
    """A connection stand-in: its flushes go to the shared event list."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self.events = events

    def flush(self) -> None:
        self.events.append(f"flush {self.name}")


async def _next_iteration() -> None:
    """Return after every callback scheduled so far has run."""
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


async def test_connections_marked_before_the_flush_callback_share_it():
    loop = asyncio.get_running_loop()
    events: list[str] = []
    flusher = Flusher(loop)
    a, b = Recorder("a", events), Recorder("b", events)
    flusher.mark(a)
    loop.call_soon(events.append, "later callback")
    flusher.mark(b)
    await _next_iteration()
    assert events == ["flush a", "flush b", "later callback"]


async def test_the_last_awaited_reply_flushes_after_the_callers_it_woke():
    loop = asyncio.get_running_loop()
    events: list[str] = []
    flusher = Flusher(loop)
    flusher.sent(2)

    def caller(name: str) -> None:  # a woken caller queues its next command, to a node of its own
        events.append(name)
        flusher.mark(Recorder(name, events))
        loop.call_soon(events.append, f"after {name}")

    loop.call_soon(caller, "caller 1")
    flusher.answered()  # one reply still awaited: no flush yet
    loop.call_soon(caller, "caller 2")
    flusher.answered()  # none awaited: flush after both callers, in their iteration
    await _next_iteration()
    await _next_iteration()
    assert events == ["caller 1", "caller 2", "flush caller 1", "flush caller 2", "after caller 1", "after caller 2"]


async def test_a_mark_while_replies_are_awaited_is_flushed_in_the_next_iteration():
    loop = asyncio.get_running_loop()
    events: list[str] = []
    flusher = Flusher(loop)
    flusher.sent(1)

    def caller() -> None:
        events.append("caller")
        flusher.mark(Recorder("conn", events))
        loop.call_soon(events.append, "after caller")

    loop.call_soon(caller)
    await _next_iteration()
    await _next_iteration()
    assert events == ["caller", "flush conn", "after caller"]


async def test_each_loop_has_one_flusher_which_goes_with_its_loop():
    loop = asyncio.get_running_loop()
    assert flusher_of(loop) is flusher_of(loop)
    other = asyncio.new_event_loop()
    try:
        assert flusher_of(other) is not flusher_of(loop)
        gone = weakref.ref(flusher_of(other))
    finally:
        other.close()
    del other
    gc.collect()
    assert gone() is None
