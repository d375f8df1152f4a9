"""All connections to one node: a few shared auto-pipelined ones and a dedicated pool.

How this works: `execute()` sends a command on one of at most `max_shared` shared
connections (`MuxConnection`), the least loaded as `book.pick_shared` says; when all
are busy (at least `grow_at` pending each) another one is opened in the background
while the current ones keep taking commands. A broken shared connection is retired at
the next pick and a new one opened: connections are never repaired in place. Blocking
commands, transactions and pub/sub `lease()` a dedicated connection from a bounded
`DedicatedPool`. So the sockets to a node are at most `max_shared + max_connections`,
however many tasks use it. `aclose()` closes both kinds and waits for every task the
set started; no socket or task outlives it.

Errors from `execute`: `LostConnectionError` / `CommandTimeoutError` carry `sent`; a
failure to open a connection (redis-py's ConnectionError, TimeoutError,
AuthenticationError) means nothing was sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any

from ..errors import PoolClosedError
from ..invalidation import Link, tracking_command
from .book import pick_shared
from .dedicated import Dedicated, DedicatedPool, DedicatedStats
from .mux import MuxConnection, MuxStats, State
from .settings import DEFAULT, NodeSettings
from .wire import hiredis_pack

Tracking = Callable[[str], Awaitable[Link | None]]  # the invalidation link a new connection redirects to



@dataclass(frozen=True, slots=True)
class NodeConnectionsStats:
    """A node's connections at one moment (copies)."""

    node: str
    shared: tuple[MuxStats, ...]
    opened_shared: int
    dedicated: DedicatedStats
    retired: MuxStats = MuxStats(0, 0, 0, 0, 0, 0)  # summed over shared connections no longer in use

    def total(self, counter: str) -> int:
        """A MuxStats counter summed over every shared connection the node ever had, so that it
        never goes down when a broken connection is replaced."""
        return getattr(self.retired, counter) + sum(getattr(m, counter) for m in self.shared)

    @property
    def connections(self) -> int:
        """Sockets open or being opened to the node."""
        return len(self.shared) + self.dedicated.idle + self.dedicated.leased + self.dedicated.opening


class NodeConnections:
    """Shared and dedicated connections to one node (see the module docstring)."""

    def __init__(
        self,
        settings: NodeSettings,
        *,
        max_shared: int = 2,
        grow_at: int = 256,
        max_connections: int = 4,
        pool_timeout: float | None = None,
        tracking: Tracking | None = None,
    ) -> None:
        """No I/O: the first command opens the first shared connection. `tracking` (client-side
        caching on): each shared connection's handshake adds CLIENT TRACKING ON REDIRECT to the
        node's invalidation link, and the connection remembers that link's generation."""
        if not 1 <= max_shared <= 64:
            raise ValueError(f"max_shared must be in 1..64, got {max_shared}")
        if grow_at < 1:
            raise ValueError(f"grow_at must be >= 1, got {grow_at}")
        self.settings = settings
        self.name = settings.name
        self.max_shared = max_shared
        self.grow_at = grow_at
        self.dedicated = DedicatedPool(settings, max_connections=max_connections, pool_timeout=pool_timeout)
        self._shared: list[MuxConnection] = []
        self._retired: list[MuxConnection] = []
        self._opening: asyncio.Task[MuxConnection] | None = None
        self._opened = 0
        self._finished = MuxStats(0, 0, 0, 0, 0, 0)  # counters of retired connections now done
        self._closed = False
        self.tracking = tracking
        self._draining: set[asyncio.Task[None]] = set()  # retired open connections finishing their replies

    # ---- shared connections ----------------------------------------------------------

    async def execute(self, *args: Any, asking: bool = False, timeout: float | None = DEFAULT) -> Any:
        """One command on a shared connection (ASKING first when `asking`); the raw reply."""
        mux = self._pick()
        if mux is None:
            mux = await self._wait_open()
        return await mux.execute(*args, asking=asking, timeout=timeout)

    async def shared(self) -> MuxConnection:
        """The shared connection the next command would use (opening one if none is open)."""
        mux = self._pick()
        return mux if mux is not None else await self._wait_open()

    def ready(self) -> MuxConnection | None:
        """The open shared connection the next command would use, without waiting (None when
        none is open yet: one is being opened)."""
        return self._pick()

    def _pick(self) -> MuxConnection | None:
        if self._closed:
            raise PoolClosedError(f"connections to {self.name} are closed")
        live = self._shared
        for m in live:
            if m.state is not State.OPEN:
                live = self._retire()
                break
        choice = pick_shared([m.pending for m in live], opening=self._opening is not None,
                             limit=self.max_shared, grow_at=self.grow_at)
        if choice.open_new:
            self._start_open()
        return None if choice.index is None else live[choice.index]

    def _retire(self) -> list[MuxConnection]:
        """Move broken shared connections out of use (aclose() still awaits them); the live ones."""
        keep = [m for m in self._shared if m.state is State.OPEN]
        self._finished = _sum(self._finished, *(m.stats() for m in self._retired if m.finished))
        self._retired = [m for m in self._retired if not m.finished]
        self._retired.extend(m for m in self._shared if m.state is not State.OPEN)
        self._shared = keep
        return keep

    def _start_open(self) -> None:
        self._opening = asyncio.ensure_future(self._open_shared())
        # a failed open nobody waited for is not an "unretrieved exception"
        self._opening.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _open_shared(self) -> MuxConnection:
        try:
            mux = await MuxConnection.open(self.settings)
            if self.tracking is not None:
                try:
                    await self._track(mux, await self.tracking(self.name))
                except BaseException:
                    await mux.aclose()
                    raise
            self._shared.append(mux)
            self._opened += 1
            return mux
        finally:
            self._opening = None

    async def _track(self, mux: MuxConnection, link: Link | None) -> None:
        """Redirect `mux`'s tracking to `link` (nothing when None); a refusal leaves it untracked."""
        if link is None or link.client_id is None:
            return
        mux.seen = link.gen
        reply = (await mux.submit_packed([hiredis_pack(tracking_command(link.client_id))]))[0]
        if reply in (b"OK", "OK", True):
            mux.gen = link.gen

    def retire_shared(self, keep: Callable[[MuxConnection], bool], grace: float) -> None:
        """Take the shared connections `keep` refuses out of use at once (new ones open at the next
        pick); each closes once what is in flight on it has its reply, within `grace` seconds."""
        old = [m for m in self._shared if not keep(m)]
        if not old or self._closed:
            return
        self._shared = [m for m in self._shared if keep(m)]
        self._retired.extend(old)
        for m in old:
            task = asyncio.ensure_future(_close_when(_idle(m), grace, m.aclose))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)

    async def _wait_open(self) -> MuxConnection:
        task = self._opening
        if task is None:  # pragma: no cover - _pick always starts one when none is open
            self._start_open()
            task = self._opening
            assert task is not None
        return await asyncio.shield(task)

    async def rename(self, command: bytes, settings: NodeSettings | None = None) -> list[Any]:
        """Send `command` (a packed CLIENT SETNAME / SETINFO) on every open shared connection, after
        making `settings` those of every connection opened from now on when given (dedicated ones
        made before are closed once idle); the raw replies, errors in place.

        A shared connection carries the name in place: the command joins its FIFO like any
        other, so commands in flight are not disturbed (the mux refuses state commands from
        callers; this one is meant for every connection of the node)."""
        if settings is not None:
            self.settings = settings
            self.dedicated.renew(settings)
        opening = self._opening
        if opening is not None:  # may have opened with the old settings: renamed with the rest
            await asyncio.gather(asyncio.shield(opening), return_exceptions=True)
        live = [m for m in self._shared if m.state is State.OPEN]
        replies = await asyncio.gather(*(m.submit_packed([command]) for m in live), return_exceptions=True)
        return [r[0] if isinstance(r, list) else r for r in replies]

    # ---- dedicated connections -------------------------------------------------------

    @asynccontextmanager
    async def lease(self, timeout: float | None = DEFAULT) -> AsyncIterator[Dedicated]:
        """A dedicated connection for the block (waits up to `pool_timeout`; see DedicatedPool)."""
        if self._closed:
            raise PoolClosedError(f"connections to {self.name} are closed")
        async with self.dedicated.lease(timeout) as conn:
            yield conn

    # ---- state -----------------------------------------------------------------------

    def stats(self) -> NodeConnectionsStats:
        """Counters of every connection to the node."""
        shared = tuple(m.stats() for m in self._shared if m.state is State.OPEN)
        gone = [m.stats() for m in (*self._retired, *self._shared) if m.state is not State.OPEN]
        return NodeConnectionsStats(self.name, shared, self._opened, self.dedicated.stats(),
                                    _sum(self._finished, *gone))

    @property
    def connection_count(self) -> int:
        """Sockets open or being opened to the node (shared and dedicated)."""
        return (
            sum(1 for m in self._shared if m.state is State.OPEN)
            + (1 if self._opening is not None else 0)
            + self.dedicated.size
        )

    def __repr__(self) -> str:
        live = [m for m in self._shared if m.state is State.OPEN]
        return (
            f"<NodeConnections {self.name}: {len(live)} shared ({sum(m.pending for m in live)} pending)"
            f" | {self.dedicated!r}>"
        )

    def busy(self) -> bool:
        """Whether a command on these connections still awaits its reply (or holds a lease)."""
        return any(m.pending for m in self._shared if m.state is State.OPEN) or self.dedicated.stats().leased > 0

    async def retire(self, grace: float) -> None:
        """Close once what is in flight has its reply, waiting at most `grace` seconds.

        A role change (a failover, CLUSTER FAILOVER) replaces a node's connections: commands
        already sent on the old ones finish there instead of failing as "outcome unknown" and
        counting against the node's breaker as if the node had failed (new commands go to the
        new connections meanwhile)."""
        await _close_when(lambda: not self.busy(), grace, self.aclose)

    async def aclose(self) -> None:
        """Close every connection to the node and wait for their tasks."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        muxes, self._shared = [*self._shared, *self._retired], []
        self._retired = []
        for task in self._draining:
            task.cancel()
        self._finished = _sum(self._finished, *(m.stats() for m in muxes))
        await asyncio.gather(*(m.aclose() for m in muxes), self.dedicated.aclose(), *self._draining,
                             return_exceptions=True)


def _idle(mux: MuxConnection) -> Callable[[], bool]:
    return lambda: mux.pending == 0


async def _close_when(idle: Callable[[], bool], grace: float, close: Callable[[], Awaitable[None]]) -> None:
    """`close()` once `idle()` holds (polled), or after `grace` seconds at most."""
    loop = asyncio.get_running_loop()
    end = loop.time() + grace
    while not idle() and loop.time() < end:
        await asyncio.sleep(0.005)
    await close()


def _sum(first: MuxStats, *more: MuxStats) -> MuxStats:
    if not more:
        return first
    return MuxStats(*(sum(getattr(m, f.name) for m in (first, *more)) for f in fields(MuxStats)))
