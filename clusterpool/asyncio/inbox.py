"""What an asyncio pubsub's readers received for the caller: one FIFO over all its connections.

Items are (link, reply) pairs; `take(only=)` picks the oldest from one node's link
(get_sharded_message(target_node=)). Waiting is cancel-safe: a cancelled waiter takes
nothing. Each link may have at most `per_link` items waiting, then its reader waits
for room (`room()`), so a slow consumer backs up into the socket, as with redis-py.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Generic, Protocol, TypeVar


class Named(Protocol):
    name: str  # the node the link is connected to ("host:port")


L = TypeVar("L", bound=Named)


class Inbox(Generic[L]):
    """What the readers received for the caller, in order; waiting on it is cancel-safe.

    At most `per_link` items wait per link: its reader then stops reading, so a slow
    consumer backs up into the socket and the server's output buffer limits apply, as
    with redis-py, instead of growing this process's memory.
    """

    def __init__(self, per_link: int = 10_000) -> None:
        self.items: deque[tuple[L, Any]] = deque()
        self.per_link = per_link
        self._counts: dict[L, int] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._room: dict[L, asyncio.Future[None]] = {}

    def put(self, link: L, item: Any) -> None:
        self.items.append((link, item))
        self._counts[link] = self._counts.get(link, 0) + 1
        self.wake()

    async def room(self, link: L) -> None:
        """Until fewer than `per_link` of `link`'s items wait."""
        while self._counts.get(link, 0) >= self.per_link:
            fut = self._room.get(link)
            if fut is None or fut.done():
                fut = self._room[link] = asyncio.get_running_loop().create_future()
            await fut

    def _taken(self, link: L) -> None:
        n = self._counts.get(link, 0) - 1
        if n > 0:
            self._counts[link] = n
        else:
            self._counts.pop(link, None)
        fut = self._room.pop(link, None) if n < self.per_link else None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def wake(self) -> None:
        """Let every waiter look again."""
        for w in self._waiters:
            if not w.done():
                w.set_result(None)

    def take(self, only: str = "") -> tuple[L, Any] | None:
        """The oldest item (from node `only`'s connection if given)."""
        item: tuple[L, Any] | None = None
        if not only:
            item = self.items.popleft() if self.items else None
        else:
            for i, it in enumerate(self.items):
                if it[0].name == only:
                    del self.items[i]
                    item = it
                    break
        if item is not None:
            self._taken(item[0])
        return item

    async def wait(self, timeout: float | None) -> None:
        """Until something is put (or `wake()`), at most `timeout` seconds."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)
