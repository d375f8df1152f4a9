"""The redirect and retry loop: how one command reaches the node that serves it.

How this works: `_run` sends a command to a node and reads the reply. MOVED
repoints the slot in the map at once (a full refresh follows in the
background) and retries on the new owner; ASK sends ASKING + the command to
the importing node once; TRYAGAIN, CLUSTERDOWN and LOADING back off. A broken
connection marks the node (its breaker may open), asks for a refresh and
retries on the slot's owner in the newest map, unless the command was sent,
may write, and the user did not opt in to retrying such commands. Waits are
cut short when a new map moves the slot. A mixin of ClusterClient.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from redis import exceptions as rx
from redis.retry import Retry

from ._redispy import EMPTY_RESPONSE, NEVER_DECODE
from . import errors
from .commands import CommandInfo
from .config import backoff_of
from .connection import pack_many, pack_one
from .policy import Action, Budget, Do, Failure, Give, Kind, decide, failure_kind, reply_failure
from .resp import command_name, parse_reply
from .topology import Node, Shard, Topology

if TYPE_CHECKING:
    from .core import Core
    from .node import NodeState
    from .observe import Observer
    from .tracing import CommandHook

T = TypeVar("T")


class RouterMixin:
    """`_run` and the waiting it does; ClusterClient supplies the routing policy (`pick_node`)."""

    core: Core
    retry: Retry
    max_redirections: int
    retry_unknown_outcome: bool
    retry_timeout: float | None
    response_callbacks: Any
    _callbacks: dict[Any, Any]
    _hook: CommandHook | None

    if TYPE_CHECKING:
        def pick_node(self, topo: Topology, slot: int, readonly: bool) -> Node: ...

    def _wait_for_owner(self, slot: int) -> Shard:
        """The slot has no primary in our map (a primary failed and no replica was promoted yet,
        or the slot is unassigned): refresh and wait within the retry budget, then give up."""
        core = self.core

        def owner() -> Shard | None:
            t = core.topology
            shard = t.slot_table[slot] if t is not None else None
            return shard if shard is not None and shard.primary is not None else None

        core.refresher.refresh_now()
        budget = self.new_budget()
        first = time.monotonic()
        while True:
            budget = budget.failed(first)
            if not budget.may_retry(time.monotonic()):
                break
            found = owner()
            if found is not None:
                return found
            core.refresher.request()
            found = self._wait_for(owner, self.backoff_delay(budget.failures))
            if found is not None:
                return found
        t = core.topology
        if t is not None and t.slot_table[slot] is not None:  # the shard is known, its primary failed
            raise errors.NodeUnavailableError(
                f"the primary serving slot {slot} failed and no replica was promoted within the retry "
                "budget; retry later, or give ClusterClient a larger retry= for long failovers"
            )
        raise errors.SlotNotCoveredError(
            f"slot {slot} is not served by any primary in the cluster's map "
            "(cluster not fully covered, or its primary failed and no replica took over in time)"
        )

    def _wait_for(self, ready: Callable[[], T | None], seconds: float) -> T | None:
        """Up to `seconds` for `ready()` to give a value, checked again whenever a new map arrives."""
        core = self.core
        deadline = time.monotonic() + seconds
        while True:
            got = ready()
            if got is not None:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            t = core.topology
            core.wait_for_change(t.version if t is not None else 0, remaining)

    def _run(self, node: Node | str, info: CommandInfo, slot: int | None, args: Sequence[Any],
             options: dict[str, Any], asking: bool = False, observed: bool = False) -> Any:
        """Run one command on `node`; every failure is handed to `policy.decide` and its action carried out."""
        core = self.core
        if core.observer is not None and not observed:
            return self._run_observed(core.observer, node, info, slot, args, options, asking)
        budget: Budget | None = None  # built on the first failure only: the hot path never pays for it
        name = node if isinstance(node, str) else node.name
        last_error: BaseException | None = None
        while True:
            st = core.nodes.get(name) or core.state(name)
            failure: Failure | None = None
            if st.open_until and not st.available():
                failure = Failure(Kind.BREAKER_OPEN, name)
            else:
                pool = st.pool
                conn = pool.acquire()
                sent = False
                fresh = not conn.is_connected
                if not fresh and not info.readonly and not self.retry_unknown_outcome:
                    # a write cannot be retried once sent: check first, without a round trip, that
                    # the server has not closed this pooled connection (CLIENT KILL, restart)
                    pool.validate(conn)
                    fresh = not conn.is_connected
                try:
                    if fresh:
                        conn.connect()
                    if asking:
                        conn.send_packed_command(pack_many(conn, [("ASKING",), tuple(args)]), False)
                        sent = True
                        conn.read_response()
                    else:
                        conn.send_packed(pack_one(conn, args))  # type: ignore[attr-defined]
                        sent = True
                    response = conn.read_reply(NEVER_DECODE in options)  # type: ignore[attr-defined]
                except rx.ResponseError as e:
                    pool.release(conn)
                    last_error = e
                    found = reply_failure(e, name)
                    if found is None:
                        if EMPTY_RESPONSE in options:
                            return options[EMPTY_RESPONSE]
                        raise
                    failure = found
                except rx.BusyLoadingError as e:  # a ConnectionError in redis-py, but a reply
                    pool.release(conn)
                    last_error = e
                    failure = Failure(Kind.LOADING, name, sent=True)
                except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
                    pool.discard(conn)
                    last_error = e
                    kind = failure_kind(e)
                    failure = Failure(kind, name, sent=sent, fresh=fresh)
                except BaseException:
                    pool.discard(conn)
                    raise
                else:
                    pool.release(conn)
                    if budget is not None or st.loading:
                        core.node_recovered(name)
                    return self.parse_reply(args[0], response, options)
            if budget is None:
                budget = self.new_budget()
            action = decide(failure, budget, now=time.monotonic(), backoff=self.backoff_delay,
                            readonly=info.readonly, retry_unknown=self.retry_unknown_outcome,
                            on_replica=st.readonly, asking=asking, keyed=slot is not None)
            budget = action.budget
            name, asking = self._apply(action, failure, st, info, slot, args, last_error)
            if observed and core.observer is not None:
                core.observer.used(name)

    def _apply(self, action: Action, failure: Failure, st: NodeState, info: CommandInfo, slot: int | None,
               args: Sequence[Any], error: BaseException | None) -> tuple[str, bool]:
        """Carry out one policy action; returns where to send next and whether with ASKING."""
        self.note_failure(action, failure, st, error)
        name = failure.node
        if action.do is Do.RAISE:
            raise self.give_up(action, failure, st, slot, args, error)
        if action.do in (Do.REDIRECT, Do.RETRY_FRESH):
            return action.node, action.asking
        if action.do is Do.BACKOFF:
            time.sleep(action.delay)
            return self._reroute(name, info, slot), False
        # WAIT_FOR_MAP: at once if a map moves the slot elsewhere during the wait, else the same node
        def elsewhere() -> str | None:
            nxt = self._reroute(name, info, slot)
            return nxt if nxt != name else None

        return self._wait_for(elsewhere, action.delay) or name, False

    def note_failure(self, action: Action, failure: Failure, st: NodeState, error: BaseException | None) -> None:
        """An action's effects on shared state: the node's breaker and pool, the map, a refresh."""
        core = self.core
        if core.observer is not None:
            core.observer.failure(action, failure, error)
        if action.drop_idle:
            st.pool.disconnect_all()
        if action.mark_failed:
            core.node_failed(failure.node, error)
        if action.keep_reads_off:
            core.node_loading(failure.node)
        if action.repoint and isinstance(error, rx.MovedError):
            core.on_moved(error.slot_id, error.host, error.port)
        if action.refresh:
            core.refresher.request()

    def give_up(self, action: Action, failure: Failure, st: NodeState, slot: int | None, args: Sequence[Any],
                 error: BaseException | None) -> BaseException:
        """The error a RAISE action stands for, chained to the reply or failure that caused it."""
        return give_up_error(action, failure, st.failures, slot, args, error)

    def _run_observed(self, observer: Observer, node: Node | str, info: CommandInfo, slot: int | None,
                      args: Sequence[Any], options: dict[str, Any], asking: bool) -> Any:
        """`_run` inside one observer scope (see observe.py): taken only while an observer is set."""
        scope = observer.command(node if isinstance(node, str) else node.name, args)
        try:
            result = RouterMixin._run(self, node, info, slot, args, options, asking, True)
        except BaseException as e:
            scope.end(e)
            raise
        scope.end(None)
        return result

    def set_observer(self, observer: Observer | None) -> Observer | None:
        """Install (None: remove) the observer of this client and all its views; returns the previous one."""
        previous, self.core.observer = self.core.observer, observer
        return previous

    @property
    def observer(self) -> Observer | None:
        """The installed observer (clusterpool.otel's, say), or None."""
        return self.core.observer

    def _run_traced(self, node: Node | str, info: CommandInfo, slot: int | None, args: Sequence[Any],
                    options: dict[str, Any], asking: bool = False, observed: bool = False) -> Any:
        """`_run` with the command hook called once per command (installed only when a hook is set)."""
        hook = self._hook
        assert hook is not None
        name = node if isinstance(node, str) else node.name
        start = time.perf_counter()
        try:
            result = RouterMixin._run(self, node, info, slot, args, options, asking, observed)
        except BaseException as e:
            hook(name, command_name(args), time.perf_counter() - start, e)
            raise
        hook(name, command_name(args), time.perf_counter() - start, None)
        return result

    def new_budget(self) -> Budget:
        """A fresh redirection and retry budget from this client's options."""
        return Budget(self.max_redirections, self.retry.get_retries(), self.retry_timeout)

    def backoff_delay(self, n: int) -> float:
        return float(backoff_of(self.retry).compute(n))

    def _reroute(self, name: str, info: CommandInfo, slot: int | None) -> str:
        """Where to try next after a failure: the slot's owner in the (maybe refreshed) map."""
        topo = self.core.topology
        if slot is None or topo is None:
            return name
        try:
            return self.pick_node(topo, slot, info.readonly).name
        except errors.SlotNotCoveredError:
            return name

    def parse_reply(self, head: Any, response: Any, options: dict[str, Any]) -> Any:
        return parse_reply(self._callbacks, self.response_callbacks, head, response, options)




def give_up_error(action: Action, failure: Failure, node_failures: int, slot: int | None, args: Sequence[Any],
                  error: BaseException | None) -> BaseException:
    """The error a RAISE action stands for (pure), chained to the reply or failure that caused it;
    `node_failures`: the node's consecutive failures, for the breaker's message."""
    name = failure.node
    if action.give is Give.TOO_MANY_REDIRECTIONS:
        err: BaseException = errors.TooManyRedirectionsError(
            f"{command_name(args)} for slot {slot} gave up after {action.budget.hops} redirections/retries; "
            f"last node {name}, last reply: {error}"
        )
    elif action.give is Give.UNKNOWN_OUTCOME:
        err = _unknown_outcome(args, name, error)
    elif action.give is Give.UNAVAILABLE:
        err = errors.NodeUnavailableError(
            f"{command_name(args)}: node {name} is unavailable (circuit breaker open after "
            f"{node_failures} consecutive failures: {error}); retry later"
        )
    else:
        assert error is not None
        return error
    err.__cause__ = error
    return err


def _unknown_outcome(args: Sequence[Any], node: str, e: BaseException | None) -> errors.UnknownOutcomeError:
    return errors.UnknownOutcomeError(
        f"{command_name(args)} was sent to {node} but the connection failed before the reply ({e}); "
        "it may or may not have been applied. Not retried because it can write; "
        "pass retry_unknown_outcome=True to retry such commands."
    )
