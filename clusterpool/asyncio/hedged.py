"""Hedged reads for the asyncio client: the I/O of one hedged read (the decisions are hedging.py's).

How this works: the read is submitted on a shared connection of its node (its reply future, A)
and a timer is set for the policy's delay. A reply before the timer settles the read, at the
cost of one timer. When the timer fires first, the budget allows and the shard has another
usable node, the same command is submitted there (B); the first successful reply wins and
the other future is cancelled: a shared connection reads a cancelled command's reply and
drops it (mux.py), so it never reaches another caller and the connection stays up. When one
leg fails the other is awaited; A's failure is what the router sees when both fail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..hedging import Hedger, second_node
from ..readfrom import NodeStates
from ..topology import Shard, Topology
from .connections import NodeConnections
from .settings import DEFAULT


def _retrieved(fut: asyncio.Future[Any]) -> None:
    """A future's exception counts as seen (no "never retrieved" warning for a losing leg)."""
    if not fut.cancelled():
        fut.exception()


class _HedgedRead:
    """The race of one read: leg A on its node, maybe leg B on a second node, one result."""

    __slots__ = ("hedger", "name", "a", "b", "second", "result", "start", "args", "shard", "sid", "states",
                 "zone", "connections")

    def __init__(self, hedger: Hedger, name: str, a: asyncio.Future[Any], result: asyncio.Future[Any],
                 args: Sequence[Any], shard: Shard | None, states: NodeStates, zone: str | None,
                 connections: Callable[[str], Any]) -> None:
        self.hedger, self.name, self.a, self.result, self.args = hedger, name, a, result, args
        self.shard, self.states, self.zone, self.connections = shard, states, zone, connections
        self.sid = shard.id if shard is not None else ""
        self.b: asyncio.Future[Any] | None = None
        self.second = ""
        self.start = time.monotonic()

    def on_a(self, a: asyncio.Future[Any]) -> None:
        _retrieved(a)
        result, b = self.result, self.b
        if result.done():
            return
        if a.cancelled():
            result.cancel()
        elif a.exception() is None:
            self.hedger.timed(self.sid, self.name, time.monotonic() - self.start)
            result.set_result(a.result())
            if b is not None:
                b.cancel()  # its connection drops the reply
        elif b is None or b.done():
            result.set_exception(a.exception())  # type: ignore[arg-type]
        # else: B may still answer

    def on_b(self, b: asyncio.Future[Any]) -> None:
        _retrieved(b)
        result, a = self.result, self.a
        if result.done() or b.cancelled():
            return
        if b.exception() is None:
            elapsed = time.monotonic() - self.start
            self.hedger.won()
            self.hedger.timed(self.sid, self.second, elapsed)
            self.hedger.timed(self.sid, self.name, elapsed)  # at least that long
            result.set_result(b.result())
            a.cancel()  # its connection drops the reply
        elif a.done():
            result.set_exception(a.exception() or b.exception())  # type: ignore[arg-type]

    def late(self) -> None:
        """The delay passed without A's reply: send B if the budget and the shard allow."""
        if self.a.done():
            return
        shard = self.shard
        hedger = self.hedger
        node = None if shard is None else second_node(shard, self.name, self.states, self.zone,
                                                      hedger.policy.to_primary)
        if node is None:
            return
        st = self.connections(node.name)
        if st.open_until and not st.available():
            return
        try:
            mux = st.pool.ready()  # a hedge never waits for a connection to open
        except Exception:  # closed meanwhile
            return
        if mux is None or not hedger.try_hedge(time.monotonic()):
            return
        try:
            b = mux.submit(self.args, timeout=DEFAULT)
        except Exception:
            return
        self.b, self.second = b, node.name
        b.add_done_callback(self.on_b)


async def read_hedged(hedger: Hedger, pool: NodeConnections, name: str, slot: int, args: Sequence[Any],
                      topo: Topology | None, states: NodeStates, zone: str | None,
                      connections: Callable[[str], Any]) -> Any:
    """The raw reply of the read `args` on node `name` (its `pool`), hedged on another node of the
    slot's shard when late; `connections(node_name)` gives that node's state (breaker, pool)."""
    mux = pool.ready() or await pool.shared()
    a = mux.submit(args, timeout=DEFAULT)
    loop = asyncio.get_running_loop()
    shard = topo.slot_table[slot] if topo is not None else None
    race = _HedgedRead(hedger, name, a, loop.create_future(), args, shard, states, zone, connections)
    hedger.read(race.start)
    a.add_done_callback(race.on_a)
    timer = loop.call_later(hedger.delay(race.sid), race.late)
    try:
        return await race.result
    finally:
        timer.cancel()
        if not race.result.done() or race.result.cancelled():  # the caller gave up: so do both legs
            a.cancel()
            if race.b is not None:
                race.b.cancel()
