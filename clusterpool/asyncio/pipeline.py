"""A cluster pipeline for asyncio (non-transactional): queued commands, sent all at once.

How this works: `execute()` hands every queued command to the client at the same time.
Commands for one node are issued in the same event-loop iteration, so the shared
connection writes them in one socket write, in queue order, and the replies come back in
that order; each command follows its own redirects and retries through the client's
`_run` (`policy.decide`), as redis-py's ClusterPipeline retries each failed command
individually. Like redis-py's cluster pipeline it is not atomic across nodes.
Transactions (`client.pipeline(transaction=True)`, MULTI/EXEC, WATCH) are in transaction.py.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from redis.commands import AsyncRedisClusterCommands
from redis.event import EventDispatcher

from ..errors import ConfigurationError
from ..observe import Observer

class Executor(Protocol):
    """What the pipeline needs of its client (the asyncio ClusterClient)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any: ...

    @property
    def observer(self) -> Observer | None: ...


class ClusterPipeline(AsyncRedisClusterCommands):
    """Commands queue up (`pipe.set(...)` returns the pipeline); `await pipe.execute()` runs them."""

    _event_dispatcher = EventDispatcher()  # declared by redis-py's command mixins

    def __init__(self, client: Executor, transaction: bool | None = None) -> None:
        if transaction:
            raise ConfigurationError(
                "this pipeline is not transactional: use client.pipeline(transaction=True) for MULTI/EXEC and WATCH"
            )
        self.client = client
        self._queue: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> ClusterPipeline:
        """Queue one command; nothing is sent until `execute()`."""
        self._queue.append((args, kwargs))
        return self

    def _split_command_across_slots(self, command: str, *keys: Any) -> ClusterPipeline:  # type: ignore[override]
        """DEL / EXISTS / TOUCH / UNLINK of many keys: one queued command (the client splits it per slot)."""
        return self.execute_command(command, *keys)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        """Send every queued command at once; replies (or errors, with raise_on_error=False) in order."""
        queue, self._queue = self._queue, []
        if not queue:
            return []
        observer = self.client.observer
        if observer is None:
            return await self._send(queue, raise_on_error)
        scope = observer.batch("PIPELINE", [a for a, _ in queue])  # each command gets its own scope inside
        try:
            replies = await self._send(queue, raise_on_error)
        except BaseException as e:
            scope.end(e)
            raise
        scope.end(None)
        return replies

    async def _send(self, queue: list[tuple[tuple[Any, ...], dict[str, Any]]], raise_on_error: bool) -> list[Any]:
        replies = await asyncio.gather(*(self.client.execute_command(*a, **kw) for a, kw in queue),
                                       return_exceptions=True)
        for r in replies:
            if isinstance(r, asyncio.CancelledError):
                raise r
        if raise_on_error:
            for i, r in enumerate(replies):
                if isinstance(r, Exception):
                    r.args = (f"Command # {i + 1} ({_describe(queue[i][0])}) of pipeline caused error: {r}",
                              *r.args[1:])
                    raise r
        return list(replies)

    async def reset(self) -> None:  # type: ignore[override]  # the pipeline's reset, as redis-py's
        """Drop the queued commands."""
        self._queue = []

    async def __aenter__(self) -> ClusterPipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.reset()

    def __len__(self) -> int:
        return len(self._queue)

    def __bool__(self) -> bool:
        return True


def _describe(args: tuple[Any, ...]) -> str:
    return " ".join(a.decode(errors="replace") if isinstance(a, bytes) else str(a) for a in args)[:200]
