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

from . import batchrules, errors
from .connection import pack_many
from .queued import Queued
from .policy import Budget, Do, Failure, Kind, decide, failure_kind, reply_kind
from .resp import command_name
from .slots import slot_of

if TYPE_CHECKING:
    from .dispatch import Dispatcher


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
        keys = self._keys(args)
        if not keys:
            table = self._client.core.table
            assert table is not None
            if table.resolve(args)[0].name in batchrules.KEYLESS_IN_TRANSACTION:
                return None
            raise batchrules.missing_key(args)
        slots = {slot_of(k) for k in keys}
        if len(slots) != 1:
            raise batchrules.keys_cross_slot(args)
        return slots.pop()

    def _queue_transactional(self, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """Queue a command of the MULTI block, or run it at once while WATCHing (before `multi()`)."""

        slot = self._slot_of_command(args)
        if self._watch_conn is not None and not self._explicit_multi:
            if command_name(args) == "UNWATCH":
                self._release_watch()  # as unwatch(): later commands are queued again
                return True
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
        if self._explicit_multi:
            raise rx.RedisError("Cannot issue a WATCH after a MULTI")
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
        if self._explicit_multi:
            raise rx.RedisError("Cannot issue nested calls to MULTI")
        if self._queue:
            raise rx.RedisError("Commands without an initial WATCH have already been issued")
        self._explicit_multi = True

    def discard(self) -> None:
        """Drop the queued commands and UNWATCH, as RedisCluster's transactional pipeline does."""
        if not self._transaction:
            raise batchrules.outside_transaction("discard")
        self.reset()

    def _check_slot(self, slot: int | None) -> None:
        if slot is not None and self._slots and slot not in self._slots:
            raise errors.CrossSlotTransactionError(batchrules.WATCH_CROSS_SLOT)

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
            raise rx.WatchError("connection lost while WATCHing; retry the transaction") from None
        return self._client.parse_reply(args[0], resp, options)

    def _send_transaction(self, conn: AbstractConnection, cmds: list[tuple[Any, ...]], first: int) -> Any:
        """MULTI, the commands, EXEC on one connection; EXEC's reply (None when a WATCH fired).
        `first` is the index in `cmds` of the first queued command (after ASKING and MULTI)."""
        try:
            conn.send_packed_command(pack_many(conn, cmds), False)
            errors_in_queue: list[tuple[int, Exception]] = []
            for i in range(len(cmds) - 1):  # +OK for MULTI, then +QUEUED or an error each
                try:
                    conn.read_response()
                except rx.ResponseError as e:
                    errors_in_queue.append((i, e))
            try:
                return conn.read_response()
            except rx.ExecAbortError:
                if errors_in_queue:
                    pos, err = errors_in_queue[0]
                    if pos >= first:  # numbered as RedisCluster numbers it: the command's queue position
                        batchrules.annotate(err, pos - first + 1, cmds[pos])
                    raise err from None
                raise
        except (rx.ConnectionError, rx.TimeoutError, OSError):
            conn.disconnect()
            raise

    def _exec_with_policy(self, slot: int, body: list[tuple[Any, ...]]) -> Any:
        """Send MULTI..EXEC for `slot` until it runs; every failure goes through `policy.decide`,
        as single commands' do. Under WATCH the held connection cannot follow a redirection or a
        failover: those raise WatchError, so `transaction()` starts over."""
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
                name = target or client.pick_node(core.ensure(), slot, False).name
                st = core.state(name)
                conn = None
                if not (st.open_until and not st.available()):
                    conn = st.pool.acquire()
                    fresh = conn._sock is None
                    if not fresh:
                        st.pool.validate(conn)  # a transaction writes: never send it on a dead socket
                        fresh = conn._sock is None
            if core.observer is not None:
                core.observer.used(name)
            if conn is None:
                failure = Failure(Kind.BREAKER_OPEN, name)
            else:
                broken, connected = True, False
                try:
                    if fresh:
                        conn.connect()
                    connected = True
                    response = self._send_transaction(conn, [("ASKING",), *body] if asking else body,
                                                      2 if asking else 1)
                    broken = False
                    if fresh or st.failures:
                        core.node_recovered(name)
                    return response
                except rx.ResponseError as e:
                    broken = False  # the server answered: the connection is still in step
                    kind = reply_kind(e)
                    if kind is None:
                        raise
                    error = e
                    failure = Failure(kind, name, sent=True, target=f"{e.host}:{e.port}" if isinstance(e, rx.AskError) else "")
                except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
                    error = e
                    failure = Failure(failure_kind(e), name, sent=connected, fresh=fresh)
                finally:
                    if not watching:  # released on every path (EXECABORT, WatchError, ...), not only on success
                        if broken:
                            conn.disconnect()
                        st.pool.release(conn)
            action = decide(failure, budget or client.new_budget(), now=time.monotonic(), backoff=client.backoff_delay,
                            readonly=False, retry_unknown=client.retry_unknown_outcome, asking=asking)
            budget = action.budget
            client.note_failure(action, failure, st, error)
            if action.do is Do.RAISE:
                raise client.give_up(action, failure, st, slot, body[1] if len(body) > 2 else body[0], error)
            if watching:
                why = "moved to another node" if failure.kind is Kind.MOVED else f"is being migrated or failed over ({error})"
                raise rx.WatchError(f"the watched slot {why} before EXEC; retry the transaction") from error
            target, asking = "", False
            if action.do is Do.REDIRECT or action.do is Do.RETRY_FRESH:
                target, asking = action.node, action.asking
            elif action.do is Do.BACKOFF:
                time.sleep(action.delay)
            else:  # WAIT_FOR_MAP: cut short by a new map
                t = core.topology
                core.wait_for_change(t.version if t is not None else 0, action.delay)

    def _execute_transaction(self, queue: list[Queued], raise_on_error: bool) -> list[Any]:
        client = self._client
        core = client.core
        if not queue and (self._watch_conn is None or not self._slots):
            return []
        if len(self._slots) > 1:
            raise errors.CrossSlotTransactionError(batchrules.TRANSACTION_CROSS_SLOT)
        # only keyless scripts: any slot will do (RedisCluster picks a random one too)
        slot = next(iter(self._slots)) if self._slots else random.randrange(16384)
        core.ensure()
        if client.refuses_writes:
            for q in queue:
                info = q.info or core.table.resolve(q.args)[0]  # type: ignore[union-attr]
                if not info.readonly:
                    client.refuse_write(q.args)
        body = [("MULTI",), *[q.args for q in queue], ("EXEC",)]
        response = self._exec_with_policy(slot, body)
        if response is None:
            raise rx.WatchError("Watched variable changed.")
        # RedisCluster's cluster transaction returns EXEC's replies unparsed (b"OK" for SET, 1 for
        # EXPIRE): its only callbacks there are for CLUSTER commands, which have no key and so
        # cannot be queued in a transaction. Errors stay in place.
        results = list(response)
        if raise_on_error:
            batchrules.raise_first_error((q.args, r) for q, r in zip(queue, results))
        return results
