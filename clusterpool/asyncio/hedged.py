"""Hedged reads for the asyncio client: the I/O of hedged reads (the decisions are hedging.py's).

How this works: a hedgeable read is submitted on a shared connection of its node (its reply
future, A) and awaited directly; the read is also queued, with the time it becomes late, for
the client's ONE hedge timer (`AsyncHedging`), which sweeps the queue when the earliest read
is due, so a read costs no timer of its own. For a read still unanswered when due, the
budget allows and the shard has another usable node with an open shared connection, the same
command is submitted there (B). A successful B cancels A: the reader wakes from A with
CancelledError, sees that B won and returns B's reply. A shared connection reads a cancelled
command's reply and drops it (mux.py), so it never reaches another caller and the connection
stays up. If A fails while B is pending, B's reply is awaited; A's failure is what the router
sees when both fail. A B that lost is cancelled the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ..hedging import Hedger, second_node
from ..readfrom import NodeStates
from ..topology import Shard, Topology
from .connections import NodeConnections
from .settings import DEFAULT


class _Race:
    """One hedged read: leg A on its node, maybe leg B on a second node."""

    __slots__ = ("name", "a", "b", "b_name", "b_start", "won", "due", "start", "args", "shard", "sid")

    def __init__(self, name: str, a: asyncio.Future[Any], args: Sequence[Any], shard: Shard | None,
                 start: float, due: float) -> None:
        self.name, self.a, self.args, self.shard, self.start, self.due = name, a, args, shard, start, due
        self.sid = shard.id if shard is not None else ""
        self.b: asyncio.Future[Any] | None = None
        self.b_name = ""
        self.b_start = 0.0
        self.won = False


class AsyncHedging:
    """One client's hedged reads (shared by its views): the pure `Hedger`, the reads waiting to
    be late and the one timer that sweeps them."""

    def __init__(self, hedger: Hedger, states: Callable[[], NodeStates], zone: str | None,
                 connections: Callable[[str], Any]) -> None:
        """`states()`: what the read strategies see now; `zone`: the client's; `connections(name)`:
        a node's state (breaker, connections)."""
        self.hedger = hedger
        self._states, self._zone, self._connections = states, zone, connections
        self._pending: list[_Race] = []
        self._timer: asyncio.TimerHandle | None = None

    async def read(self, pool: NodeConnections, name: str, slot: int, args: Sequence[Any],
                   topo: Topology | None) -> Any:
        """The raw reply of the read `args` on node `name` (its `pool`), hedged on another node of
        the slot's shard (in map `topo`) when late."""
        hedger = self.hedger
        mux = pool.ready() or await pool.shared()
        a = mux.submit(args, timeout=DEFAULT)
        loop = asyncio.get_running_loop()
        shard = topo.slot_table[slot] if topo is not None else None
        now = loop.time()
        race = _Race(name, a, args, shard, now, now + hedger.delay(shard.id if shard is not None else ""))
        hedger.read(now)
        self._pending.append(race)
        timer = self._timer
        if timer is None or race.due < timer.when():
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(race.due, self._sweep)
        try:
            reply = await a
        except asyncio.CancelledError:
            b = race.b
            current = asyncio.current_task()
            if race.won and b is not None and not (current is not None and current.cancelling()):
                return b.result()  # B won and cancelled A
            if b is not None:
                b.cancel()
            raise
        except Exception:
            b = race.b
            if b is None:
                raise
            try:  # A failed with B on its way: B's reply, if it has one
                reply = await b
            except Exception:
                raise a.exception() from None  # type: ignore[misc]
            hedger.won()
            return reply
        if race.b is not None:
            race.b.cancel()  # lost: its connection drops the reply
        hedger.timed(race.sid, name, loop.time() - now)
        return reply

    def _sweep(self) -> None:
        """Send the hedges of the reads now late; re-arm for the first one not yet due."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        states = self._states()
        keep = []
        nxt = None
        for race in self._pending:
            if race.a.done():
                continue
            if race.due <= now:
                self._hedge(race, now, states)
                continue
            keep.append(race)
            if nxt is None or race.due < nxt:
                nxt = race.due
        self._pending = keep
        if nxt is not None:
            self._timer = loop.call_at(nxt, self._sweep)

    def _hedge(self, race: _Race, now: float, states: NodeStates) -> None:
        """Send `race`'s read to a second node if the shard has one and the budget allows."""
        hedger, shard = self.hedger, race.shard
        node = None if shard is None else second_node(shard, race.name, states, self._zone, hedger.policy.to_primary)
        if node is None:
            return
        st = self._connections(node.name)
        if st.open_until and not st.available():
            return
        try:
            mux = st.pool.ready()  # a hedge never waits for a connection to open
        except Exception:  # closed meanwhile
            return
        if mux is None or not hedger.try_hedge(now):
            return
        try:
            b = mux.submit(race.args, timeout=DEFAULT)
        except Exception:
            return
        race.b, race.b_name, race.b_start = b, node.name, now
        b.add_done_callback(lambda fut: self._answered(race, fut))

    def _answered(self, race: _Race, b: asyncio.Future[Any]) -> None:
        """B's reply (or failure) came: if it is a reply and A has none yet, B wins."""
        if b.cancelled():
            return
        if b.exception() is not None:
            return  # A goes on (the reader awaits B only if A fails too)
        if race.a.done():
            return
        race.won = True
        hedger = self.hedger
        hedger.won()
        now = asyncio.get_running_loop().time()
        hedger.timed(race.sid, race.b_name, now - race.b_start)
        hedger.timed(race.sid, race.name, now - race.start)  # at least that long
        race.a.cancel()  # wakes the reader; A's connection drops the late reply

    def close(self) -> None:
        """Stop the timer (the client is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = []
