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
from .. import errors
from ..commands import CommandInfo, CommandTable
from ..config import Config, backoff_of
from ..observe import Observer
from ..policy import Action, Budget, Do, Failure, Kind, decide, failure_kind, reply_failure
from ..readfrom import ReadStrategy, choose
from ..resp import parse_reply
from ..router import give_up_error
from ..topology import Node, Shard, Topology
from .errors import CommandTimeoutError, LostConnectionError
from .state import AsyncNode, ClusterState


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

    async def _pick(self, topo: Topology, slot: int, readonly: bool) -> Node:
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            shard = await self._wait_for_owner(slot)
        if not readonly:
            return shard.primary  # type: ignore[return-value]
        return choose(shard, self._state.node_states, self._strategy, self._to_primary,
                      self.config.replica_fallback)


    # ---- one command, through policy.decide -------------------------------------------

    async def _run(self, name: str, info: CommandInfo, slot: int | None, args: Sequence[Any],
                   options: dict[str, Any], asking: bool = False, blocking: bool = False,
                   observed: bool = False, first: asyncio.Future[Any] | None = None) -> Any:
        """Run one command on node `name`; every failure is handed to `policy.decide`.
        `observed`: inside the observer's scope already; `first`: the reply of the first try,
        already written (`start`)."""
        state = self._state
        if state.observer is not None and not observed:
            return await self._run_observed(state.observer, name, info, slot, args, options, asking, blocking, first)
        budget: Budget | None = None  # built on the first failure only
        error: BaseException | None = None
        raw = bool(options) and NEVER_DECODE in options and self._decodes
        if raw:  # a shared connection decodes every reply: bytes (DUMP) need a connection of their own
            blocking = True
        while True:
            st = state.nodes.get(name) or state.state(name)
            failure: Failure
            if first is None and st.open_until and not st.available():
                failure = Failure(Kind.BREAKER_OPEN, name)
            else:
                try:
                    if first is not None:
                        pending, first = first, None
                        reply = await pending
                    elif blocking:
                        reply = await self._leased(st, args, asking, raw)
                    else:
                        reply = await st.pool.execute(*args, asking=asking)
                except rx.ResponseError as e:
                    error = e
                    found = reply_failure(e, name)
                    if found is None:
                        if EMPTY_RESPONSE in options:
                            return options[EMPTY_RESPONSE]
                        raise
                    failure = found
                except rx.BusyLoadingError as e:  # a ConnectionError in redis-py, but a reply
                    error = e
                    failure = Failure(Kind.LOADING, name, sent=True)
                except LostConnectionError as e:
                    error = e
                    failure = Failure(Kind.CONNECTION, name, sent=e.sent, fresh=not e.reused)
                except CommandTimeoutError as e:
                    error = e
                    failure = Failure(Kind.TIMEOUT, name, sent=e.sent)
                except (rx.ConnectionError, rx.TimeoutError, OSError) as e:  # opening failed: nothing sent
                    error = e
                    failure = Failure(failure_kind(e), name, sent=False)
                else:
                    if budget is not None or st.loading:
                        state.node_recovered(name)
                    return self._parse(args[0], reply, options)
            if budget is None:
                budget = Budget(self.config.max_redirections, self.retry.get_retries(), self.config.retry_timeout)
            action = decide(failure, budget, now=time.monotonic(), backoff=self._backoff, readonly=info.readonly,
                            retry_unknown=self.config.retry_unknown_outcome, on_replica=st.readonly,
                            asking=asking, keyed=slot is not None)
            budget = action.budget
            name, asking = await self._apply(action, failure, st, info, slot, args, error)
            if observed and state.observer is not None:
                state.observer.used(name)

    async def _run_observed(self, observer: Observer, name: str, info: CommandInfo, slot: int | None,
                            args: Sequence[Any], options: dict[str, Any], asking: bool, blocking: bool,
                            first: asyncio.Future[Any] | None) -> Any:
        """`_run` inside one observer scope (see observe.py): taken only while an observer is set."""
        scope = observer.command(name, args)
        try:
            result = await self._run(name, info, slot, args, options, asking, blocking, True, first)
        except BaseException as e:
            scope.end(e)
            raise
        scope.end(None)
        return result

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
        """What a policy action says about the cluster, applied whatever the command does next."""
        state = self._state
        if state.observer is not None:
            state.observer.failure(action, failure, error)
        if action.drop_idle:
            st.pool.dedicated.drop_idle()
        if action.mark_failed:
            state.node_failed(failure.node, error)
        if action.keep_reads_off:
            state.node_loading(failure.node)
        if action.repoint and isinstance(error, rx.MovedError):
            state.on_moved(error.slot_id, error.host, error.port)
        if action.refresh:
            state.request_refresh()

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

    async def _wait_for_owner(self, slot: int) -> Shard:
        """The slot has no primary in our map: refresh and wait within the retry budget, then give up."""
        state = self._state

        def owner() -> Shard | None:
            t = state.topology
            shard = t.slot_table[slot] if t is not None else None
            return shard if shard is not None and shard.primary is not None else None

        await state.refresh_now()
        budget = Budget(self.config.max_redirections, self.retry.get_retries(), self.config.retry_timeout)
        first = time.monotonic()
        while True:
            budget = budget.failed(first)
            if not budget.may_retry(time.monotonic()):
                break
            found = owner()
            if found is not None:
                return found
            state.request_refresh()
            t = state.topology
            await state.wait_for_change(t.version if t is not None else 0, self._backoff(budget.failures))
        t = state.topology
        if t is not None and t.slot_table[slot] is not None:
            raise errors.NodeUnavailableError(
                f"the primary serving slot {slot} failed and no replica was promoted within the retry budget"
            )
        raise errors.SlotNotCoveredError(f"slot {slot} is not served by any primary in the cluster's map")

    # ---- what transactions ask of the client (transaction.py) ---------------------------

    def command_table(self) -> CommandTable:
        """The command table in use (the shipped specs before discovery): no I/O."""
        table = self._state.table
        return table if table is not None else CommandTable.bundled_with(None)

    async def primary_for(self, slot: int) -> str:
        """The name of the slot's primary in the current map (waiting for one within the retry budget)."""
        topo = await self._state.ensure()
        return (await self._pick(topo, slot, False)).name

    def node_state(self, name: str) -> AsyncNode:
        """Node `name`'s state: its breaker and its connections (made on first use)."""
        return self._state.nodes.get(name) or self._state.state(name)

    def node_recovered(self, name: str) -> None:
        """A command succeeded on `name` after failures: its breaker closes."""
        self._state.node_recovered(name)

    def new_budget(self) -> Budget:
        """A fresh redirection and retry allowance for one command."""
        return Budget(self.config.max_redirections, self.retry.get_retries(), self.config.retry_timeout)

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
