"""Single-slot transactions on a cluster pipeline: MULTI/EXEC and WATCH.

How this works: every key of a transaction must hash to one slot (use
{hash tags}); MULTI, the commands and EXEC go on one connection to that
slot's primary. WATCH takes a connection to the slot's owner and holds it
(commands then run at once) until EXEC or reset, as in redis-py. An EXEC
aborted because the slot moved (MOVED) is re-sent to the new owner, one
aborted by ASK (slot migrating, keys already on the importing node) is
re-sent there after ASKING, which holds for a whole MULTI block; EXECABORT
guarantees nothing ran. Under WATCH the transaction cannot follow: it
raises WatchError so `transaction()` starts over.

As RedisCluster: each command's slot is found when it is queued (a keyless
command, or one whose keys span slots, is refused there), EXEC's replies come
back unparsed, and keys of several slots raise CrossSlotTransactionError.
"""

from __future__ import annotations

import time
import random
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx
from redis.connection import AbstractConnection

from . import batchrules, txplan
from .connection import pack_many
from .queued import Queued
from .router import acquire_by
from .policy import Budget, Do, Failure, Kind, answered, decide, failure_of

if TYPE_CHECKING:
    from .interfaces import Dispatcher


class TransactionMixin:
    """WATCH/MULTI/EXEC for ClusterPipeline; the refusals and messages are RedisCluster's."""

    _client: Dispatcher
    _transaction: bool
    _queue: list[Queued]
    _watch_conn: AbstractConnection | None
    _watch_node: str
    _slots: set[int]
    _explicit_multi: bool

    if TYPE_CHECKING:
        def reset(self) -> None: ...
        def _keys(self, args: tuple[Any, ...]) -> list[Any]: ...

    # ---------------------------------------------------------------- queueing

    def _slot_of_command(self, args: tuple[Any, ...]) -> int | None:
        """The command's slot, refused as RedisCluster refuses it: no key, or keys in several slots."""
        keys = self._keys(args)  # discovers the cluster (and its command table) on first use
        table = self._client.core.table
        assert table is not None
        return txplan.command_slot(table, args, keys)

    def _queue_transactional(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """Queue a command of the MULTI block, or run it at once while WATCHing (before `multi()`)."""

        slot = self._slot_of_command(args)
        how = txplan.mode(args, self._watch_conn is not None, self._explicit_multi)
        if how is txplan.Mode.UNWATCH:
            self._release_watch()  # as unwatch(): later commands are queued again
            return True
        if how is txplan.Mode.IMMEDIATE:
            return self._immediate(args, options, slot)
        if slot is not None:
            self._slots.add(slot)
        q = Queued(args, options)
        q.slot = slot
        self._queue.append(q)
        return self

    def watch(self, *names: Any) -> None:
        """WATCH keys (one slot); the pipeline then runs commands at once until `multi()`."""
        if not self._transaction:
            raise batchrules.outside_transaction("watch")
        txplan.check_watch(self._explicit_multi)
        args = ("WATCH", *names)
        slot = self._slot_of_command(args)
        if self._watch_conn is None:
            self._check_slot(slot)
            client = self._client
            name = client.pick_node(client.core.ensure(), slot, False).name  # type: ignore[arg-type]
            self._watch_conn = client.core.state(name).pool.acquire()
            self._watch_node = name
        self._immediate(args, {}, slot)

    def unwatch(self) -> None:
        """UNWATCH: later commands are queued again; the pipeline's slot stays."""
        if not self._transaction:
            raise batchrules.outside_transaction("unwatch")
        self._release_watch()

    def multi(self) -> None:
        """Start the MULTI block after WATCH and immediate commands; `execute()` ends it."""
        if not self._transaction:
            raise batchrules.outside_transaction("multi")
        txplan.check_multi(self._explicit_multi, len(self._queue))
        self._explicit_multi = True

    def discard(self) -> None:
        """Drop the queued commands and UNWATCH, as RedisCluster's transactional pipeline does."""
        if not self._transaction:
            raise batchrules.outside_transaction("discard")
        self.reset()

    def _check_slot(self, slot: int | None) -> None:
        txplan.check_slot(self._slots, slot)

    def _release_watch(self) -> None:
        conn, self._watch_conn = self._watch_conn, None
        if conn is not None:
            try:
                conn.send_command("UNWATCH")
                conn.read_response()
            except (rx.ConnectionError, rx.TimeoutError, OSError):
                conn.disconnect()
            self._client.core.state(self._watch_node).pool.release(conn)

    def _immediate(self, args: tuple[Any, ...], options: dict[str, Any], slot: int | None) -> Any:
        conn = self._watch_conn
        assert conn is not None
        self._check_slot(slot)
        if slot is not None:
            self._slots.add(slot)
        try:
            conn.send_command(*args)
            resp = conn.read_response()
        except (rx.ConnectionError, rx.TimeoutError, OSError):
            conn.disconnect()
            self.reset()
            raise rx.WatchError(txplan.WATCH_LOST) from None
        return self._client.parse_reply(args[0], resp, options)

    def _send_transaction(self, conn: AbstractConnection, cmds: list[tuple[Any, ...]], first: int) -> Any:
        """MULTI, the commands, EXEC on one connection; EXEC's reply (None when a WATCH fired).
        `first` is the index in `cmds` of the first queued command (after ASKING and MULTI).
        A LOADING reply ends the read with BusyLoadingError: redis-py closes the connection on it,
        and a queued command refused with LOADING makes the EXEC abort, so nothing ran."""
        replies: list[Any] = []
        try:
            conn.send_packed_command(pack_many(conn, cmds), False)
            for _ in cmds:  # +OK for MULTI, +QUEUED or an error each, then EXEC's
                try:
                    replies.append(conn.read_response())
                except rx.ResponseError as e:
                    replies.append(e)
        except (rx.ConnectionError, rx.TimeoutError, OSError):
            conn.disconnect()
            raise
        return txplan.exec_reply(cmds, replies, first)

    def _exec_with_policy(self, slot: int, body: list[tuple[Any, ...]], deadline: float | None) -> Any:
        """Send MULTI..EXEC for `slot` until it runs, or `deadline`; every failure goes through
        `policy.decide`, as single commands' do. Under WATCH the held connection cannot follow a
        redirection or a failover: those raise WatchError, so `transaction()` starts over."""
        client = self._client
        core = client.core
        budget: Budget | None = None
        target, asking = "", False  # the next node and ASKING, from the last action
        while True:
            watching = self._watch_conn is not None
            error: BaseException | None = None
            fresh = False
            if watching:
                name = self._watch_node
                st = core.state(name)
                conn: AbstractConnection | None = self._watch_conn
            else:
                name = target or client.pick_node(core.ensure(), slot, False, deadline).name
                st = core.state(name)
                conn = None
                if not (st.open_until and not st.available()):
                    conn = st.pool.acquire() if deadline is None else acquire_by(st.pool, deadline)
                    fresh = not conn.is_connected
                    if not fresh:
                        st.pool.validate(conn)  # a transaction writes: never send it on a dead socket
                        fresh = not conn.is_connected
            if core.observer is not None:
                core.observer.used(name)
            if conn is None:
                failure = Failure(Kind.BREAKER_OPEN, name)
            else:
                broken, connected = True, False
                if deadline is not None:
                    conn.limit(deadline - time.monotonic())  # type: ignore[attr-defined]
                try:
                    if fresh:
                        conn.connect()
                    connected = True
                    response = self._send_transaction(conn, *txplan.frame(body, asking))
                    broken = False
                    if fresh or st.failures:
                        core.node_recovered(name)
                    return response
                except BaseException as e:
                    broken = not answered(e)
                    found = failure_of(e, name, sent=connected, fresh=fresh)
                    if found is None:
                        raise
                    error, failure = e, found
                finally:
                    if deadline is not None:
                        conn.unlimit()  # type: ignore[attr-defined]
                    if not watching:  # released on every path (EXECABORT, WatchError, ...), not only on success
                        if broken:
                            conn.disconnect()
                        st.pool.release(conn)
            action = decide(failure, budget or client.new_budget(deadline), now=time.monotonic(), backoff=client.backoff_delay,
                            readonly=False, retry_unknown=client.retry_unknown_outcome, asking=asking)
            budget = action.budget
            client.note_failure(action, failure, st, error)
            if action.do is Do.RAISE:
                raise client.give_up(action, failure, st, slot, body[1] if len(body) > 2 else body[0], error)
            target, asking = txplan.resend_to(action, failure, error, watching)
            if action.do is Do.BACKOFF:
                time.sleep(action.delay)
            else:  # WAIT_FOR_MAP: cut short by a new map
                t = core.topology
                core.wait_for_change(t.version if t is not None else 0, action.delay)

    def _execute_transaction(self, queue: list[Queued], raise_on_error: bool) -> list[Any]:
        client = self._client
        core = client.core
        if txplan.nothing_to_run(len(queue), self._watch_conn is not None, self._slots):
            return []
        slot = txplan.exec_slot(self._slots, random.randrange)
        deadline = client.deadline()
        core.ensure()
        commands = [q.args for q in queue]
        if client.refuses_writes:
            assert core.table is not None
            write = txplan.first_write(core.table, commands)
            if write is not None:
                client.refuse_write(write)
        response = self._exec_with_policy(slot, txplan.body(commands), deadline)
        # RedisCluster's cluster transaction returns EXEC's replies unparsed (b"OK" for SET, 1 for
        # EXPIRE): its only callbacks there are for CLUSTER commands, which have no key and so
        # cannot be queued in a transaction. Errors stay in place.
        return txplan.results(response, commands, raise_on_error)
