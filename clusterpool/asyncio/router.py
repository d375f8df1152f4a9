"""One command through `policy.decide` for the asyncio client: send, classify the reply or
failure, carry out the action (MOVED repoints the slot, ASK resends with ASKING written back to
back with the command, TRYAGAIN/CLUSTERDOWN/LOADING back off with asyncio.sleep, a broken
connection marks the node and waits for a new map), and the small interface transactions use
(transaction.py). The sync client's counterpart is clusterpool/router.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rx

from .._redispy import EMPTY_RESPONSE, NEVER_DECODE
from ..commands import CommandInfo, CommandTable
from ..config import Config, backoff_of
from ..observe import Observer
from ..policy import Action, Budget, Do, Failure, Kind, deadline_after, decide, failure_of
from ..readfrom import ReadStrategy, choose
from ..cachestore import MISS
from ..resp import parse_reply
from ..giveup import give_up_error, owner_of, owner_step
from ..hedging import hedgeable
from ..topology import Node, Shard, Topology
from .errors import by_deadline
from .hedged import AsyncHedging
from .state import AsyncNode, ClusterState


class Carrier:
    """Where a cacheable read's reply came from: the node, the tracking generation of the shared
    connection that carried it (None: untracked) and the raw reply (MISS until one arrived)."""

    __slots__ = ("gen", "node", "reply")

    def __init__(self) -> None:
        self.node = ""
        self.gen: int | None = None
        self.reply: Any = MISS


class RouterMixin:
    """`_run` and what it needs; mixed into the asyncio ClusterClient, which sets these attributes."""

    _state: ClusterState
    config: Config
    retry: Any
    response_callbacks: Any
    _callbacks: dict[Any, Any]
    _strategy: ReadStrategy
    _to_primary: bool
    _decodes: bool
    _hedging: AsyncHedging | None

    async def _pick(self, topo: Topology, slot: int, readonly: bool, deadline: float | None = None) -> Node:
        """The node for `slot` (waiting, until `deadline` at most, for a primary when it has none)."""
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            shard = await self._wait_for_owner(slot, deadline)
        if not readonly:
            return shard.primary  # type: ignore[return-value]
        return choose(shard, self._state.node_states, self._strategy, self._to_primary,
                      self.config.replica_fallback)


    # ---- one command, through policy.decide -------------------------------------------

    async def _run(self, name: str, info: CommandInfo, slot: int | None, args: Sequence[Any],
                   options: dict[str, Any], asking: bool = False, blocking: bool = False,
                   observed: bool = False, first: asyncio.Future[Any] | None = None,
                   deadline: float | None = None, via: Carrier | None = None) -> Any:
        """Run one command on node `name`; every failure is handed to `policy.decide`.
        `observed`: inside the observer's scope already; `first`: the reply of the first try,
        already written (`start`); `deadline`: when the call gives up (retry_timeout from its
        start; from now when not given); `via`: a cacheable read, told which connection carried its
        reply (cacheread.py). A blocking command's wait is the server's, not bounded."""
        state = self._state
        if state.observer is not None and not observed:
            return await self._run_observed(state.observer, name, info, slot, args, options, asking, blocking, first,
                                            deadline, via)
        if deadline is None and self.config.retry_timeout is not None:
            deadline = time.monotonic() + self.config.retry_timeout
        bound = None if blocking else deadline  # what the wait for a reply is cut at
        budget: Budget | None = None  # built on the first failure only
        error: BaseException | None = None
        raw = bool(options) and NEVER_DECODE in options and self._decodes
        if raw:  # a shared connection decodes every reply: bytes (DUMP) need a connection of their own
            blocking = True
        hedging = self._hedging
        if hedging is not None and (slot is None or blocking or not hedgeable(info.readonly, info.flags,
                                                                                self._to_primary)):
            hedging = None
        while True:
            st = state.nodes.get(name) or state.state(name)
            failure: Failure
            if first is None and st.open_until and not st.available():
                failure = Failure(Kind.BREAKER_OPEN, name)
            else:
                try:
                    if first is not None:
                        pending, first = first, None
                        reply = await (pending if bound is None else by_deadline(pending, bound, name))
                    elif blocking:
                        reply = await self._leased(st, args, asking, raw)
                    elif via is not None:  # a cacheable read: never hedged (the reply's connection matters)
                        reply = await self._carried(st, args, asking, bound, via)
                    elif hedging is not None and not asking:  # a read hedged when it is late (hedged.py)
                        hedged = hedging.read(st.pool, name, slot, args, state.topology)  # type: ignore[arg-type]
                        reply = await (hedged if bound is None else by_deadline(hedged, bound, name))
                    elif bound is not None:
                        reply = await by_deadline(st.pool.execute(*args, asking=asking), bound, name)
                    else:
                        reply = await st.pool.execute(*args, asking=asking)
                except BaseException as e:
                    found = failure_of(e, name, sent=False)  # the connection layer's errors say if sent
                    if found is None:
                        if EMPTY_RESPONSE in options and isinstance(e, rx.ResponseError):
                            return options[EMPTY_RESPONSE]
                        raise
                    error, failure = e, found
                else:
                    if budget is not None or st.loading:
                        state.node_recovered(name)
                    return self._parse(args[0], reply, options)
            if budget is None:
                budget = self.new_budget(deadline)
            action = decide(failure, budget, now=time.monotonic(), backoff=self._backoff, readonly=info.readonly,
                            retry_unknown=self.config.retry_unknown_outcome, on_replica=st.readonly,
                            asking=asking, keyed=slot is not None)
            budget = action.budget
            name, asking = await self._apply(action, failure, st, info, slot, args, error)
            if observed and state.observer is not None:
                state.observer.used(name)

    async def _run_observed(self, observer: Observer, name: str, info: CommandInfo, slot: int | None,
                            args: Sequence[Any], options: dict[str, Any], asking: bool, blocking: bool,
                            first: asyncio.Future[Any] | None, deadline: float | None, via: Carrier | None) -> Any:
        """`_run` inside one observer scope (see observe.py): taken only while an observer is set."""
        scope = observer.command(name, args)
        try:
            result = await self._run(name, info, slot, args, options, asking, blocking, True, first, deadline, via)
        except BaseException as e:
            scope.end(e)
            raise
        scope.end(None)
        return result

    async def _carried(self, st: AsyncNode, args: Sequence[Any], asking: bool, bound: float | None,
                       via: Carrier) -> Any:
        """A cacheable read on a shared connection picked here, so `via` knows its tracking
        generation (a connection set up for an older invalidation link is retired first)."""
        pool = st.pool
        mux = pool.ready() or await pool.shared()
        links = self._state.links
        if links is not None and links.stale(st.name, mux.seen):
            pool.retire_shared(links.keeps(st.name), self._state.retire_grace())
            mux = pool.ready() or await pool.shared()
        via.node, via.gen, via.reply = st.name, mux.gen, MISS
        pending = mux.execute(*args, asking=asking)
        reply = await (pending if bound is None else by_deadline(pending, bound, st.name))
        via.reply = reply
        return reply

    async def _leased(self, st: AsyncNode, args: Sequence[Any], asking: bool, raw: bool) -> Any:
        """A command on a dedicated connection (blocking ones wait as long as the server does);
        `raw`: the reply is read undecoded."""
        async with st.pool.lease() as conn:
            if asking:
                await conn.execute("ASKING")
            await conn.send(*args)
            return await conn.read(timeout=None, disable_decoding=raw)

    async def _apply(self, action: Action, failure: Failure, st: AsyncNode, info: CommandInfo, slot: int | None,
                     args: Sequence[Any], error: BaseException | None) -> tuple[str, bool]:
        """Carry out one policy action; returns where to send next and whether with ASKING."""
        state = self._state
        self.note_failure(action, failure, st, error)
        name = failure.node
        if action.do is Do.RAISE:
            raise give_up_error(action, failure, st.failures, slot, args, error)
        if action.do in (Do.REDIRECT, Do.RETRY_FRESH):
            return action.node, action.asking
        if action.do is Do.BACKOFF:
            await asyncio.sleep(action.delay)
            return self._reroute(name, info, slot), False
        # WAIT_FOR_MAP: at once if a map moves the slot elsewhere during the wait, else the same node
        deadline = time.monotonic() + action.delay
        while True:
            nxt = self._reroute(name, info, slot)
            remaining = deadline - time.monotonic()
            if nxt != name or remaining <= 0:
                return nxt, False
            t = state.topology
            await state.wait_for_change(t.version if t is not None else 0, remaining)

    def note_failure(self, action: Action, failure: Failure, st: AsyncNode, error: BaseException | None) -> None:
        """What a policy action says about the cluster (NodeBook.note_failure)."""
        self._state.note_failure(action, failure, st, error)

    def _reroute(self, name: str, info: CommandInfo, slot: int | None) -> str:
        """Where to try next: the slot's owner in the (maybe refreshed) map."""
        topo = self._state.topology
        if slot is None or topo is None:
            return name
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            return name
        if not info.readonly:
            return shard.primary.name
        return choose(shard, self._state.node_states, self._strategy, self._to_primary,
                      self.config.replica_fallback).name

    async def _wait_for_owner(self, slot: int, deadline: float | None = None) -> Shard:
        """The slot has no primary in our map: refresh and wait within the retry budget or the
        call's deadline (giveup.owner_wait decides how long), then give up (giveup.no_owner_error)."""
        state = self._state
        budget = self.new_budget(deadline)
        if deadline is None:
            await state.refresh_now()
        else:  # the refresh task probes: this call waits only as long as it may
            state.request_refresh()
            await self._wait_for_map(slot, budget.left(time.monotonic()) or 0.0)
        while True:
            found, budget, wait = owner_step(state.topology, slot, budget, time.monotonic(), self._backoff)
            if found is not None:
                return found
            state.request_refresh()
            await self._wait_for_map(slot, wait)

    async def _wait_for_map(self, slot: int, seconds: float) -> None:
        """Up to `seconds` for a map that names a primary for `slot`."""
        state = self._state
        end = time.monotonic() + seconds
        while owner_of(state.topology, slot) is None and (left := end - time.monotonic()) > 0:
            t = state.topology
            await state.wait_for_change(t.version if t is not None else 0, left)

    # ---- what transactions ask of the client (transaction.py) ---------------------------

    def command_table(self) -> CommandTable:
        """The command table in use (the shipped specs before discovery): no I/O."""
        table = self._state.table
        return table if table is not None else CommandTable.bundled_with(None)

    async def primary_for(self, slot: int, deadline: float | None = None) -> str:
        """The name of the slot's primary in the current map (waiting for one within the retry
        budget, or until `deadline`)."""
        topo = await self._state.ensure()
        return (await self._pick(topo, slot, False, deadline)).name

    def node_state(self, name: str) -> AsyncNode:
        """Node `name`'s state: its breaker and its connections (made on first use)."""
        return self._state.nodes.get(name) or self._state.state(name)

    def node_recovered(self, name: str) -> None:
        """A command succeeded on `name` after failures: its breaker closes."""
        self._state.node_recovered(name)

    def new_budget(self, deadline: float | None = None) -> Budget:
        """A fresh redirection and retry allowance for a call that gives up at `deadline`
        (None: from now, when retry_timeout is set)."""
        if deadline is None:
            deadline = deadline_after(self.config.retry_timeout, time.monotonic())
        return Budget(self.config.max_redirections, self.retry.get_retries(), deadline)

    def deadline(self) -> float | None:
        """When a call starting now gives up (None without retry_timeout)."""
        return deadline_after(self.config.retry_timeout, time.monotonic())

    def backoff_delay(self, n: int) -> float:
        """The backoff before retry number `n`."""
        return self._backoff(n)

    @property
    def retry_unknown_outcome(self) -> bool:
        return bool(self.config.retry_unknown_outcome)

    def parse_reply(self, head: Any, response: Any, options: dict[str, Any]) -> Any:
        """A raw reply through redis-py's response callback for `head` (and this client's own)."""
        return self._parse(head, response, options)

    def give_up(self, action: Action, failure: Failure, st: AsyncNode, slot: int | None, args: Sequence[Any],
                error: BaseException | None) -> BaseException:
        """The error a RAISE action stands for."""
        return give_up_error(action, failure, st.failures, slot, args, error)

    async def carry_out(self, action: Action, failure: Failure, st: AsyncNode, slot: int | None,
                        args: Sequence[Any], error: BaseException | None) -> tuple[str, bool]:
        """Carry out a policy action for a write to `slot`: where to send next and whether with ASKING
        (after any backoff or wait for a new map); raises what a RAISE action stands for."""
        table = self.command_table()
        return await self._apply(action, failure, st, table.resolve(("EXEC",))[0], slot, args, error)

    def _backoff(self, n: int) -> float:
        return float(backoff_of(self.retry).compute(n))

    def _parse(self, head: Any, response: Any, options: dict[str, Any]) -> Any:
        return parse_reply(self._callbacks, self.response_callbacks, head, response, options)
