"""A cluster pipeline for asyncio (non-transactional): queued commands, sent all at once.

How this works: `execute()` hands every queued command to the client at the same time.
Commands routed to one slot are placed by `client.place` on their node's open shared
connection and packed, in one pass over the queue (a command name's checks are made once
per pass); each node's share is queued as ONE unit with one future for the list of its
replies (no task or future per command), and replies are parsed with each command name's
response callback, looked up once. From the first command that needs
more (keyless, fan-out, no open connection ...) on, the rest run as tasks of
`execute_command`, created in order after the placed ones.
Commands for one node are issued in the same event-loop iteration, so the shared
connection writes them in one socket write, in queue order, and the replies come back in
that order. A started command whose reply is a failure (an error reply, a timeout, a
lost connection) follows its own redirects and retries through `client.finish`
(`policy.decide`), one after the other in queue order, as redis-py's ClusterPipeline
retries each failed command individually. Like redis-py's cluster pipeline it is not atomic across nodes.
With an observer installed (clusterpool.otel) every command runs through `execute_command`
instead, so that each gets its own span inside the pipeline's.
Transactions (`client.pipeline(transaction=True)`, MULTI/EXEC, WATCH) are in transaction.py.

Queueing is redis.asyncio's: every queued call returns the pipeline at once (chainable, not
awaitable), `delete`/`exists`/`touch`/`unlink` and `mset_nonatomic` queue one command per slot
of their keys (each with its own reply), and the methods RedisCluster blocks in pipelines
raise its RedisClusterException when called (batchrules.py: unless every key is in one slot).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterable, Mapping, Sequence
from contextvars import ContextVar
from itertools import chain
from typing import Any, Protocol

from redis.commands import AsyncRedisClusterCommands

from .. import batchrules
from .._redispy import CommandMixinState
from ..commands import CommandInfo, CommandTable
from ..errors import ConfigurationError
from ..observe import Observer
from ..quickcommands import QuickCommands
from .mux import MuxConnection

# True while a pipeline runs (in its tasks too): a command it sends through execute_command is
# never served from the client-side cache, nor stored in it
IN_PIPELINE: ContextVar[bool] = ContextVar("clusterpool_in_pipeline", default=False)


class Share:
    """One node's part of a pipeline (`client.place`): its connection, the queue positions it
    carries with each one's route (what the policy needs on a failure) and packed bytes.
    Built once by `place`, then only read."""

    __slots__ = ("data", "direct", "idxs", "infos", "mux", "node", "slots")

    def __init__(self, node: str, mux: MuxConnection) -> None:
        self.node = node
        self.mux = mux
        self.direct = mux.packs_directly
        self.idxs: list[int] = []
        self.infos: list[CommandInfo] = []
        self.slots: list[int] = []
        self.data: list[bytes] = []


class Executor(Protocol):
    """What the pipeline needs of its client (the asyncio ClusterClient)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any: ...

    async def initialize(self) -> Any: ...

    def command_table(self) -> CommandTable: ...

    def forget_written(self, commands: Iterable[Sequence[Any]]) -> None: ...

    @property
    def observer(self) -> Observer | None: ...

    def place(self, queue: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
              slots: Sequence[int] | None = None) -> tuple[list[Share], int]: ...

    def callback_for(self, head: Any) -> Any: ...

    def settle(self, args: Sequence[Any], options: dict[str, Any], reply: Any) -> Any: ...

    async def finish(self, node: str, info: CommandInfo, slot: int, args: Sequence[Any], options: dict[str, Any],
                     error: BaseException) -> Any: ...


# the ignore: redis-py's own async command mixins disagree on command_info's signature
class ClusterPipeline(QuickCommands, CommandMixinState, AsyncRedisClusterCommands):  # type: ignore[misc]
    """Commands queue up (`pipe.set(...)` returns the pipeline); `await pipe.execute()` runs them."""


    def __init__(self, client: Executor, transaction: bool | None = None) -> None:
        if transaction:
            raise ConfigurationError(
                "this pipeline is not transactional: use client.pipeline(transaction=True) for MULTI/EXEC and WATCH"
            )
        self.cluster_client = client
        self._queue: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> ClusterPipeline:
        """Queue one command; nothing is sent until `execute()`."""
        self._queue.append((args, kwargs))
        return self

    def _split_command_across_slots(self, command: str, *keys: Any) -> ClusterPipeline:  # type: ignore[override]
        """DEL / EXISTS / TOUCH / UNLINK of many keys: one queued command per slot, each with its own
        reply, as redis.asyncio's pipeline queues them."""
        for group in batchrules.by_slot(keys).values():
            self.execute_command(command, *group)
        return self

    def mset_nonatomic(self, mapping: Mapping[Any, Any]) -> ClusterPipeline:  # type: ignore[override]
        """One MSET queued per slot of the keys (each atomic on its own, each with its own reply),
        as redis.asyncio's pipeline queues it."""
        for group in batchrules.by_slot(mapping).values():
            self.execute_command("MSET", *chain.from_iterable((k, mapping[k]) for k in group))
        return self

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        """Send every queued command at once; replies (or errors, with raise_on_error=False) in order."""
        queue, self._queue = self._queue, []
        if not queue:
            return []
        observer = self.cluster_client.observer
        inside = IN_PIPELINE.set(True)
        try:
            if observer is None:
                replies = await run_all(self.cluster_client, queue)
            else:
                scope = observer.batch("PIPELINE", [a for a, _ in queue])  # each command gets its own scope inside
                try:
                    replies = await _each_observed(self.cluster_client, queue)
                except BaseException as e:
                    scope.end(e)
                    raise
                scope.end(None)
        finally:  # the batch's writes drop their keys' cached entries (read-your-writes)
            IN_PIPELINE.reset(inside)
            self.cluster_client.forget_written(a for a, _ in queue)
        if raise_on_error:
            batchrules.raise_first_error(zip((a for a, _ in queue), replies))
        return list(replies)

    async def reset(self) -> None:  # type: ignore[override]  # the pipeline's reset, as redis-py's
        """Drop the queued commands."""
        self._queue = []

    async def initialize(self) -> ClusterPipeline:
        """Discover the cluster if not done yet (`await pipe` does the same), as redis.asyncio's."""
        await self.cluster_client.initialize()
        return self

    def __await__(self) -> Generator[Any, None, ClusterPipeline]:
        return self.initialize().__await__()

    async def __aenter__(self) -> ClusterPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.reset()

    def __len__(self) -> int:
        return len(self._queue)

    def __bool__(self) -> bool:
        return True

    def _keys(self, args: Sequence[Any]) -> list[Any]:
        """The command's keys (for `batchrules.check_blocked`), from the command table: no I/O."""
        return self.cluster_client.command_table().keys(args)


async def run_all(client: Executor, queue: list[tuple[tuple[Any, ...], dict[str, Any]]],
                  slots: Sequence[int] | None = None) -> list[Any]:
    """Every queued command's reply or exception, in order (see the module docstring).
    `slots`: each command's slot, when the caller has computed them."""
    replies: list[Any] = [None] * len(queue)
    shares, placed = client.place(queue, slots)
    tasks: dict[int, asyncio.Future[Any]] = {}
    batches: list[tuple[asyncio.Future[list[Any]], Share]] = []
    try:
        for i in range(placed, len(queue)):  # these run as tasks, in order, after the placed ones
            args, kw = queue[i]
            tasks[i] = asyncio.ensure_future(client.execute_command(*args, **kw))
        for share in shares:
            try:
                batches.append((share.mux.submit_packed(share.data), share))
            except Exception as e:  # noqa: BLE001 - the connection broke meanwhile: the policy decides
                for j, i in enumerate(share.idxs):
                    tasks[i] = asyncio.ensure_future(
                        client.finish(share.node, share.infos[j], share.slots[j], *queue[i], e))
        failed: list[tuple[int, Share, int, BaseException]] = []
        callbacks: dict[Any, Any] = {}  # each command name's response callback, looked up once
        for fut, share in batches:
            if not fut.done():
                try:
                    await fut
                except Exception:  # noqa: BLE001, S110 - looked at below
                    pass
            error = fut.exception()
            if error is not None:
                failed.extend((i, share, j, error) for j, i in enumerate(share.idxs))
                continue
            for j, raw in enumerate(fut.result()):
                i = share.idxs[j]
                if isinstance(raw, Exception):
                    failed.append((i, share, j, raw))
                    continue
                args, kw = queue[i]
                try:
                    if kw:
                        replies[i] = client.settle(args, kw, raw)
                        continue
                    cb = callbacks.get(args[0], _UNSEEN)
                    if cb is _UNSEEN:
                        cb = callbacks[args[0]] = client.callback_for(args[0])
                    replies[i] = raw if cb is None else cb(raw)
                except Exception as e:  # noqa: BLE001 - a reply the callback refuses is that command's error
                    replies[i] = e
        # the policy decides for each failure: redirect, retry, or its error; one at a time in
        # queue order, so two commands on one key are redone in their order
        for i, share, j, error in sorted(failed, key=lambda f: f[0]):
            args, kw = queue[i]
            try:
                replies[i] = await client.finish(share.node, share.infos[j], share.slots[j], args, kw, error)
            except Exception as e:  # noqa: BLE001 - that command's error, in its place
                replies[i] = e
        if tasks:
            done = await asyncio.gather(*tasks.values(), return_exceptions=True)
            for i, r in zip(tasks, done):
                replies[i] = r
    except BaseException:  # cancelled: abandon every reply still awaited
        for fut, _ in batches:
            fut.cancel()
        for t in tasks.values():
            t.cancel()
        raise
    return replies


_UNSEEN = object()


async def _each_observed(client: Executor, queue: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
    """Every command through `execute_command` at once (each inside its own observer scope)."""
    replies = await asyncio.gather(*(client.execute_command(*a, **kw) for a, kw in queue), return_exceptions=True)
    for r in replies:
        if isinstance(r, asyncio.CancelledError):
            raise r
    return list(replies)


batchrules.block_methods(ClusterPipeline, AsyncRedisClusterCommands)
