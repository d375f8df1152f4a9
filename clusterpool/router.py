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
from redis.connection import AbstractConnection
from redis.retry import Retry

from ._redispy import EMPTY_RESPONSE, NEVER_DECODE
from . import errors
from .commands import CommandInfo
from .config import backoff_of
from .connection import pack_many, pack_one
from .pool import ConnectionPool
from .hedged import HedgedReads
from .hedging import hedgeable
from .giveup import deadline_error, give_up_error, owner_of, owner_step
from .policy import Action, Budget, Do, Failure, Kind, answered, deadline_after, decide, failure_of
from .cachestore import Ticket
from .resp import command_name, parse_reply
from .topology import Node, Shard, Topology

if TYPE_CHECKING:
    from .core import Core
    from .nodestate import NodeState
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
    _hedging: HedgedReads | None
    _to_primary: bool
    _client_az: str | None

    if TYPE_CHECKING:
        def pick_node(self, topo: Topology, slot: int, readonly: bool, deadline: float | None = None) -> Node: ...

    def _wait_for_owner(self, slot: int, deadline: float | None = None) -> Shard:
        """The slot has no primary in our map (a primary failed and no replica was promoted yet,
        or the slot is unassigned): refresh and wait within the retry budget or the call's
        deadline (giveup.owner_wait decides how long), then give up (giveup.no_owner_error)."""
        core = self.core
        budget = self.new_budget(deadline)
        if deadline is None:
            core.refresher.refresh_now()
        else:  # the refresher's probes run on its thread: this call waits only as long as it may
            core.refresher.request()
            self._wait_for(lambda: owner_of(core.topology, slot), budget.left(time.monotonic()) or 0.0)
        while True:
            found, budget, wait = owner_step(core.topology, slot, budget, time.monotonic(), self.backoff_delay)
            if found is not None:
                return found
            core.refresher.request()
            self._wait_for(lambda: owner_of(core.topology, slot), wait)

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
             options: dict[str, Any], asking: bool = False, observed: bool = False,
             deadline: float | None = None, ticket: Ticket | None = None) -> Any:
        """Run one command on `node`; every failure is handed to `policy.decide` and its action carried out.
        `deadline`: when the call gives up (retry_timeout from its start; from now when not given);
        `ticket`: a cacheable read's (cachestore), its reply stored when the connection was tracked."""
        core = self.core
        if core.observer is not None and not observed:
            return self._run_observed(core.observer, node, info, slot, args, options, asking, deadline, ticket)
        if deadline is None and self.retry_timeout is not None:
            deadline = time.monotonic() + self.retry_timeout
        # a blocking command's wait is the server's (and socket_timeout's): the deadline bounds the rest
        limit = deadline if deadline is not None and "blocking" not in info.flags else None
        budget: Budget | None = None  # built on the first failure only: the hot path never pays for it
        name = node if isinstance(node, str) else node.name
        last_error: BaseException | None = None
        hedging = self._hedging
        if hedging is not None and (slot is None or not hedgeable(info.readonly, info.flags, self._to_primary)):
            hedging = None
        while True:
            st = core.nodes.get(name) or core.state(name)
            failure: Failure | None = None
            if st.open_until and not st.available():
                failure = Failure(Kind.BREAKER_OPEN, name)
            else:
                pool = st.pool
                conn = pool.acquire() if deadline is None else acquire_by(pool, deadline)
                sent = held = False
                fresh = not conn.is_connected
                if not fresh and not info.readonly and not self.retry_unknown_outcome:
                    # a write cannot be retried once sent: check first, without a round trip, that
                    # the server has not closed this pooled connection (CLIENT KILL, restart)
                    pool.validate(conn)
                    fresh = not conn.is_connected
                if ticket is not None and not fresh:
                    fresh = retrack(core, conn, name)
                if limit is not None:
                    conn.limit(limit - time.monotonic())  # type: ignore[attr-defined]
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
                    if hedging is not None and not asking:  # a read hedged when it is late (hedged.py)
                        response, held = hedging.read(conn, pool, name, slot, args, NEVER_DECODE in options,  # type: ignore[arg-type]
                                                      core.topology, core.node_states, self._client_az, self._hedge_pool)
                    else:
                        response = conn.read_reply(NEVER_DECODE in options)  # type: ignore[attr-defined]
                except BaseException as e:
                    if limit is not None:
                        conn.unlimit()  # type: ignore[attr-defined]
                    (pool.release if answered(e) else pool.discard)(conn)
                    found = failure_of(e, name, sent=sent, fresh=fresh)
                    if found is None:
                        if EMPTY_RESPONSE in options and isinstance(e, rx.ResponseError):
                            return options[EMPTY_RESPONSE]
                        raise
                    last_error, failure = e, found
                else:
                    if limit is not None:
                        conn.unlimit()  # type: ignore[attr-defined]
                    if not held:  # held: the reply is a hedge's; hedged.py keeps this connection until its own
                        if ticket is not None:  # (a hedge's reply is not cached: its connection tracks nothing)
                            keep(core, ticket, name, conn, response)
                        pool.release(conn)
                    if budget is not None or st.loading:
                        core.node_recovered(name)
                    return self.parse_reply(args[0], response, options)
            if budget is None:
                budget = self.new_budget(deadline)
            action = decide(failure, budget, now=time.monotonic(), backoff=self.backoff_delay,
                            readonly=info.readonly, retry_unknown=self.retry_unknown_outcome,
                            on_replica=st.readonly, asking=asking, keyed=slot is not None)
            budget = action.budget
            name, asking = self._apply(action, failure, st, info, slot, args, last_error)
            if observed and core.observer is not None:
                core.observer.used(name)

    def _hedge_pool(self, name: str) -> tuple[NodeState, ConnectionPool]:
        """Node `name`'s state and pool, for a hedge sent there."""
        st = self.core.nodes.get(name) or self.core.state(name)
        return st, st.pool

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
            return self._reroute(name, info, slot, action.budget.deadline), False
        # WAIT_FOR_MAP: at once if a map moves the slot elsewhere during the wait, else the same node
        def elsewhere() -> str | None:
            nxt = self._reroute(name, info, slot, action.budget.deadline)
            return nxt if nxt != name else None

        return self._wait_for(elsewhere, action.delay) or name, False

    def note_failure(self, action: Action, failure: Failure, st: NodeState, error: BaseException | None) -> None:
        """An action's effects on shared state (NodeBook.note_failure)."""
        self.core.note_failure(action, failure, st, error)

    def give_up(self, action: Action, failure: Failure, st: NodeState, slot: int | None, args: Sequence[Any],
                 error: BaseException | None) -> BaseException:
        """The error a RAISE action stands for, chained to the reply or failure that caused it."""
        return give_up_error(action, failure, st.failures, slot, args, error)

    def _run_observed(self, observer: Observer, node: Node | str, info: CommandInfo, slot: int | None,
                      args: Sequence[Any], options: dict[str, Any], asking: bool, deadline: float | None,
                      ticket: Ticket | None = None) -> Any:
        """`_run` inside one observer scope (see observe.py): taken only while an observer is set."""
        scope = observer.command(node if isinstance(node, str) else node.name, args)
        try:
            result = RouterMixin._run(self, node, info, slot, args, options, asking, True, deadline, ticket)
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
                    options: dict[str, Any], asking: bool = False, observed: bool = False,
                    deadline: float | None = None, ticket: Ticket | None = None) -> Any:
        """`_run` with the command hook called once per command (installed only when a hook is set)."""
        hook = self._hook
        assert hook is not None
        name = node if isinstance(node, str) else node.name
        start = time.perf_counter()
        try:
            result = RouterMixin._run(self, node, info, slot, args, options, asking, observed, deadline, ticket)
        except BaseException as e:
            hook(name, command_name(args), time.perf_counter() - start, e)
            raise
        hook(name, command_name(args), time.perf_counter() - start, None)
        return result

    def new_budget(self, deadline: float | None = None) -> Budget:
        """A fresh redirection and retry budget from this client's options, for a call that
        gives up at `deadline` (None: from now, when retry_timeout is set)."""
        if deadline is None:
            deadline = deadline_after(self.retry_timeout, time.monotonic())
        return Budget(self.max_redirections, self.retry.get_retries(), deadline)

    def deadline(self) -> float | None:
        """When a call starting now gives up (None without retry_timeout)."""
        return deadline_after(self.retry_timeout, time.monotonic())

    def backoff_delay(self, n: int) -> float:
        return float(backoff_of(self.retry).compute(n))

    def _reroute(self, name: str, info: CommandInfo, slot: int | None, deadline: float | None) -> str:
        """Where to try next after a failure: the slot's owner in the (maybe refreshed) map
        (waiting for one until the call's deadline at most, when it has none)."""
        topo = self.core.topology
        if slot is None or topo is None:
            return name
        try:
            return self.pick_node(topo, slot, info.readonly, deadline).name
        except errors.SlotNotCoveredError:
            return name

    def parse_reply(self, head: Any, response: Any, options: dict[str, Any]) -> Any:
        return parse_reply(self._callbacks, self.response_callbacks, head, response, options)


def acquire_by(pool: ConnectionPool, deadline: float) -> AbstractConnection:
    """A pooled connection, waiting no longer than the call's deadline allows."""
    left = deadline - time.monotonic()
    if pool.timeout is not None and pool.timeout <= left:
        return pool.acquire()
    try:
        return pool.acquire(max(left, 0.001))
    except errors.PoolTimeoutError as e:
        raise deadline_error("waiting for a pooled connection", str(e)) from e


def retrack(core: Core, conn: AbstractConnection, name: str) -> bool:
    """Before a cacheable read on a pooled connection: drop the connection if it was set up before
    the node's live link (it reconnects tracked). True when dropped. A connection whose tracking
    the server refused (ACL) for this link is kept: it serves reads, uncached."""
    link = core.links_book.redirect_for(name)
    if link is None or conn.tracking_for == link.gen:  # type: ignore[attr-defined]
        return False
    conn.disconnect()
    return True


def keep(core: Core, ticket: Ticket, name: str, conn: AbstractConnection, response: Any) -> None:
    """A cacheable read's reply: stored if the node's live link tracked the connection it came on
    (the node's link is started when it has none)."""
    book, store = core.links_book, core.cache
    assert store is not None
    tracked = book.tracked(name, conn.tracking_gen)  # type: ignore[attr-defined]
    if not tracked and book.links.get(name) is None and core.links is not None:
        core.links.want(name)
    now = time.monotonic() if store.ttl else 0.0
    if type(ticket[2]) is list:  # an MGET's: each value as its key's GET
        if type(response) is list and len(response) == len(ticket[2]):
            store.finish(ticket, list(zip(ticket[2], ticket[3], response)), ticket[4], name, now, tracked)
        return
    store.finish_one(ticket, name, response, now, tracked)
