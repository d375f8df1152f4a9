"""Single-slot transactions for asyncio: MULTI/EXEC and WATCH on a dedicated connection.

How this works: every decision is txplan's (shared with the sync client) or policy's;
this module only does the I/O. `await pipe.watch(k)` leases a dedicated connection to
the slot's primary and holds it: commands then run at once on it (`await pipe.get(k)`)
until `multi()`; after that they are queued. `execute()` writes [ASKING,] MULTI, the
commands and EXEC in one go on a dedicated lease (the held one under WATCH) and reads
the replies; a MOVED/ASK/TRYAGAIN/CLUSTERDOWN that aborted the EXEC goes to
`policy.decide` and the transaction is resent where it says; under WATCH it cannot
follow and raises WatchError, so `transaction()` starts over. As redis.asyncio's
RedisCluster, EXEC's replies go through the response callbacks (SET gives True).

Cancellation: a task cancelled while it uses a dedicated connection (before or after EXEC
was written) marks it broken, and a broken connection is discarded on release, never
reused; the lease is released on every path. A held WATCH connection goes back after
UNWATCH (or discarded) on `reset()`, `async with` exit, `execute()` and `unwatch()`, so
no WATCH reaches another user of the pool. An EXEC sent whose reply was lost raises
UnknownOutcomeError (policy's UNKNOWN_OUTCOME), as on the sync client.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import Any, Protocol

from redis import exceptions as rx
from redis.commands import AsyncRedisClusterCommands

from .. import batchrules, txplan
from .._redispy import CommandMixinState
from ..commands import CommandTable
from ..routes import write_refused
from ..policy import Action, Budget, Do, Failure, Kind, decide, failure_of
from ..slots import slot_of
from .dedicated import Dedicated, DedicatedPool
from .errors import LostConnectionError, by_deadline, is_error_reply
from .state import AsyncNode

_Command = tuple[tuple[Any, ...], dict[str, Any]]  # args, options


class TxClient(Protocol):
    """What a transaction needs of its client (the asyncio ClusterClient or one of its views)."""

    refuses_writes: bool

    @property
    def retry_unknown_outcome(self) -> bool: ...
    async def initialize(self) -> Any: ...
    def command_table(self) -> CommandTable: ...
    async def primary_for(self, slot: int, deadline: float | None = None) -> str: ...
    def node_state(self, name: str) -> AsyncNode: ...
    def node_recovered(self, name: str) -> None: ...
    def new_budget(self, deadline: float | None = None) -> Budget: ...
    def deadline(self) -> float | None: ...
    def backoff_delay(self, n: int) -> float: ...
    def parse_reply(self, head: Any, response: Any, options: dict[str, Any]) -> Any: ...
    def forget_written(self, commands: Iterable[Sequence[Any]]) -> None: ...
    def note_failure(self, action: Action, failure: Failure, st: AsyncNode, error: BaseException | None) -> None: ...
    def give_up(self, action: Action, failure: Failure, st: AsyncNode, slot: int | None, args: Sequence[Any],
                error: BaseException | None) -> BaseException: ...
    async def carry_out(self, action: Action, failure: Failure, st: AsyncNode, slot: int | None,
                        args: Sequence[Any], error: BaseException | None) -> tuple[str, bool]: ...


class TransactionPipeline(CommandMixinState, AsyncRedisClusterCommands):  # type: ignore[misc]
    """`client.pipeline(transaction=True)`: queue commands, `await pipe.execute()` runs them atomically."""


    def __init__(self, client: TxClient, shard_hint: Any = None) -> None:
        """No I/O: `watch()` or `execute()` does the first."""
        if shard_hint:
            raise rx.RedisClusterException("shard_hint is deprecated in cluster mode")
        self.cluster_client = client
        self._queue: list[_Command] = []
        self._slots: set[int] = set()  # slots of the commands and WATCHes so far (more than one: refused)
        self._explicit_multi = False
        self._watch: Dedicated | None = None  # the held connection while WATCHing
        self._watch_pool: DedicatedPool | None = None
        self._watch_node = ""
        self._lost = False  # the WATCH connection was dropped (cancelled, broken): EXEC must not run
        self._unwatched = False  # EXEC was answered on the WATCH connection: the server dropped the WATCHes

    # ---- queueing ----------------------------------------------------------------------

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Queue the command (returns the pipeline), or while WATCHing before `multi()` return an
        awaitable that runs it at once, as redis.asyncio's transactional pipeline does."""
        slot = txplan.command_slot(self.cluster_client.command_table(), args)
        how = txplan.mode(args, self._watch is not None, self._explicit_multi)
        if how is txplan.Mode.UNWATCH:
            return self._unwatch_now()
        if how is txplan.Mode.IMMEDIATE:
            txplan.check_slot(self._slots, slot)  # before the awaitable is even awaited
            return self._immediate(args, options, slot)
        if slot is not None:
            self._slots.add(slot)
        self._queue.append((args, options))
        return self

    def _split_command_across_slots(self, command: str, *keys: Any) -> Any:
        """DEL / EXISTS / TOUCH / UNLINK: queued once per slot as redis.asyncio does (keys of two
        slots then fail at execute with CrossSlotTransactionError); one command under WATCH."""
        if txplan.mode((command,), self._watch is not None, self._explicit_multi) is not txplan.Mode.QUEUE:
            return self.execute_command(command, *keys)
        by_slot: dict[int, list[Any]] = {}
        for k in keys:
            by_slot.setdefault(slot_of(k), []).append(k)
        for group in by_slot.values():
            self.execute_command(command, *group)
        return self

    def mset_nonatomic(self, *args: Any, **kwargs: Any) -> Any:
        """Not in a transaction, as in redis.asyncio's RedisCluster."""
        raise NotImplementedError("Method is not supported in transactional context.")

    async def watch(self, *names: Any) -> None:  # type: ignore[override]
        """WATCH keys (one slot) on a connection held until EXEC or reset; commands then run at once."""
        txplan.check_watch(self._explicit_multi)
        await self.cluster_client.initialize()
        args = ("WATCH", *names)
        slot = txplan.command_slot(self.cluster_client.command_table(), args)
        if self._watch is None:
            txplan.check_slot(self._slots, slot)
            assert slot is not None  # WATCH always has a key
            name = await self.cluster_client.primary_for(slot)
            pool = self.cluster_client.node_state(name).pool.dedicated
            self._watch = await pool.acquire()
            self._watch_pool, self._watch_node = pool, name
        await self._immediate(args, {}, slot)

    async def unwatch(self) -> None:  # type: ignore[override]
        """UNWATCH: later commands are queued again; the transaction's slot stays."""
        await self._release_watch()

    def multi(self) -> None:
        """Start the MULTI block after WATCH and immediate commands; `execute()` ends it."""
        txplan.check_multi(self._explicit_multi, len(self._queue))
        self._explicit_multi = True

    async def discard(self) -> None:
        """Drop the queued commands and UNWATCH."""
        await self.reset()

    async def _unwatch_now(self) -> bool:
        await self._release_watch()
        return True

    async def _immediate(self, args: tuple[Any, ...], options: dict[str, Any], slot: int | None) -> Any:
        d = self._watch
        if d is None:  # the WATCH connection was given back or lost meanwhile
            raise rx.WatchError(txplan.WATCH_LOST)
        txplan.check_slot(self._slots, slot)
        if slot is not None:
            self._slots.add(slot)
        try:
            reply = await d.execute(*args)
        except BaseException as e:
            if is_error_reply(e):
                raise  # the server answered (WRONGTYPE, MOVED, LOADING): the connection is still in step
            self._drop_watch()  # broken, timed out or cancelled mid-command: its reply may still come
            if isinstance(e, rx.ConnectionError | rx.TimeoutError | OSError):
                await self.reset()
                raise rx.WatchError(txplan.WATCH_LOST) from None
            raise
        return self.cluster_client.parse_reply(args[0], reply, options)

    # ---- execute -----------------------------------------------------------------------

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        """MULTI, the queued commands, EXEC; EXEC's replies parsed, errors raised or in place."""
        queue, self._queue = self._queue, []
        try:
            if self._lost:
                raise rx.WatchError(txplan.WATCH_LOST)
            if txplan.nothing_to_run(len(queue), self._watch is not None, self._slots):
                return []
            slot = txplan.exec_slot(self._slots, random.randrange)
            deadline = self.cluster_client.deadline()
            await self.cluster_client.initialize()
            commands = [args for args, _ in queue]
            if self.cluster_client.refuses_writes:
                write = txplan.first_write(self.cluster_client.command_table(), commands)
                if write is not None:
                    raise write_refused(write)
            response = await self._exec_with_policy(slot, txplan.body(commands), deadline)
            replies = txplan.results(response, commands, raise_on_error)
            parse = self.cluster_client.parse_reply
            return [r if isinstance(r, Exception) else parse(args[0], r, options)
                    for (args, options), r in zip(queue, replies)]
        finally:
            # its writes drop their keys' cached entries (read-your-writes)
            self.cluster_client.forget_written(a for a, _ in queue)
            await self.reset()

    async def _exec_with_policy(self, slot: int, body: list[tuple[Any, ...]], deadline: float | None) -> Any:
        """Send MULTI..EXEC for `slot` until it runs, or `deadline`; every failure goes through
        `policy.decide`. At the deadline an attempt is cancelled: its lease is discarded."""
        client = self.cluster_client
        budget: Budget | None = None
        target, asking = "", False  # the next node and ASKING, from the last action
        while True:
            watching = self._watch is not None
            name = self._watch_node if watching else (target or await client.primary_for(slot, deadline))
            st = client.node_state(name)
            error: BaseException | None = None
            failure: Failure
            if not watching and st.open_until and not st.available():
                failure = Failure(Kind.BREAKER_OPEN, name)
            else:
                try:
                    response = await self._attempt(st, *txplan.frame(body, asking), deadline=deadline)
                    if budget is not None or st.failures:
                        client.node_recovered(name)
                    return response
                except BaseException as e:
                    found = failure_of(e, name, sent=False)  # the connection layer's errors say if sent
                    if found is None:
                        raise
                    error, failure = e, found
            action = decide(failure, budget or client.new_budget(deadline), now=time.monotonic(),
                            backoff=client.backoff_delay, readonly=False,
                            retry_unknown=client.retry_unknown_outcome, asking=asking)
            budget = action.budget
            if not watching:
                target, asking = await client.carry_out(action, failure, st, slot, _shown(body), error)
                continue
            client.note_failure(action, failure, st, error)
            if action.do is Do.RAISE:
                raise client.give_up(action, failure, st, slot, _shown(body), error)
            txplan.resend_to(action, failure, error, watching)  # raises WatchError

    async def _attempt(self, st: AsyncNode, cmds: list[tuple[Any, ...]], first: int, *,
                       deadline: float | None = None) -> Any:
        """One try: write `cmds` on the held WATCH connection, or on a dedicated lease released
        (discarded if anything went wrong, cancellation included) before returning. At `deadline`
        the try is cancelled: while waiting for the lease nothing was sent, after that it may have."""
        if self._watch is not None:
            on = self._on(self._watch, cmds, first)
            return await (on if deadline is None else by_deadline(on, deadline, st.name))
        pool = st.pool.dedicated
        d = await (pool.acquire() if deadline is None else by_deadline(pool.acquire(), deadline, st.name, sent=False))
        try:
            on = self._on(d, cmds, first)
            return await (on if deadline is None else by_deadline(on, deadline, st.name))
        except BaseException as e:
            if not is_error_reply(e):
                d.broken = True
            raise
        finally:
            pool.release(d)

    async def _on(self, d: Dedicated, cmds: list[tuple[Any, ...]], first: int) -> Any:
        if d.used and not await _still_open(d):
            # closed by the server while idle (or while WATCHing): nothing was sent
            raise LostConnectionError("dedicated connection was closed by the server", node=d.settings.name,
                                      sent=False, reused=True)
        try:
            replies = await d.execute_many(cmds)
        except BaseException:
            d.broken = True
            raise
        if d is self._watch:
            self._unwatched = True  # EXEC (answered, even aborted) ends every WATCH of the connection
        return txplan.exec_reply(cmds, replies, first)

    # ---- reset -------------------------------------------------------------------------

    async def reset(self) -> None:  # type: ignore[override]  # the pipeline's reset, as redis-py's
        """Drop the queued commands and the slot; UNWATCH and give the WATCH connection back."""
        self._queue = []
        self._explicit_multi = False
        self._slots = set()
        self._lost = False
        await self._release_watch()

    async def _release_watch(self) -> None:
        d, pool, unwatched = self._watch, self._watch_pool, self._unwatched
        self._watch, self._watch_pool, self._watch_node, self._unwatched = None, None, "", False
        if d is None or pool is None:
            return
        try:
            if not d.broken and not unwatched:
                await d.execute("UNWATCH")
        except BaseException as e:
            d.broken = True  # its WATCH may still hold: never reused
            if not isinstance(e, Exception):
                raise  # cancelled
        finally:
            pool.release(d)

    def _drop_watch(self) -> None:
        """Give the WATCH connection back for discarding, at once (no I/O)."""
        d, pool = self._watch, self._watch_pool
        self._watch, self._watch_pool, self._watch_node, self._unwatched = None, None, "", False
        if d is not None and pool is not None:
            self._lost = True
            d.broken = True
            pool.release(d)

    async def initialize(self) -> TransactionPipeline:
        await self.cluster_client.initialize()
        return self

    async def __aenter__(self) -> TransactionPipeline:
        return await self.initialize()

    async def __aexit__(self, *exc: object) -> None:
        await self.reset()

    def __await__(self) -> Generator[Any, None, TransactionPipeline]:
        return self.initialize().__await__()

    def __len__(self) -> int:
        return len(self._queue)

    def __bool__(self) -> bool:
        return True

    def _keys(self, args: Sequence[Any]) -> list[Any]:
        """The command's keys (for `batchrules.check_blocked`), from the command table: no I/O."""
        return self.cluster_client.command_table().keys(args)

    def __repr__(self) -> str:
        watching = f", watching on {self._watch_node}" if self._watch is not None else ""
        return f"<TransactionPipeline {len(self._queue)} queued{watching}>"

    def __del__(self) -> None:
        try:
            if self._watch is not None:  # dropped without reset: never hand its WATCH to another user
                self._drop_watch()
        except Exception:  # noqa: BLE001 - no loop any more; the pool's aclose() closes it
            pass


batchrules.block_methods(TransactionPipeline, AsyncRedisClusterCommands)


async def run_transaction(client: TxClient, func: Callable[[TransactionPipeline], Awaitable[Any]],
                          watches: Sequence[Any], *, shard_hint: Any = None, value_from_callable: bool = False,
                          watch_delay: float | None = None) -> Any:
    """redis.asyncio RedisCluster.transaction: WATCH, `await func(pipe)`, EXEC, again on WatchError."""
    async with TransactionPipeline(client, shard_hint) as pipe:
        while True:
            try:
                if watches:
                    await pipe.watch(*watches)
                func_value = await func(pipe)
                exec_value = await pipe.execute()
                return func_value if value_from_callable else exec_value
            except rx.WatchError:
                if watch_delay is not None and watch_delay > 0:
                    await asyncio.sleep(watch_delay)
                continue


async def _still_open(d: Dedicated) -> bool:
    """Whether a connection that served before is still open and clean (no stray bytes, no EOF)."""
    try:
        return not await d.connection.can_read()
    except BaseException as e:
        d.broken = True
        if not isinstance(e, Exception):
            raise
        return False


def _shown(body: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The command errors name: the first queued one (MULTI for an empty block), as the sync client."""
    return body[1] if len(body) > 2 else body[0]
