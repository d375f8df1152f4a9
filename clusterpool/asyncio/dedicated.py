"""A bounded per-node pool of DEDICATED connections: blocking commands, WATCH/MULTI/EXEC, pub/sub.

How this works: a task that needs a connection to itself joins a FIFO of waiters (plain
futures). After every change (a waiter joins, a connection is returned or discarded, an
open fails) `book.assign` says how many waiters get an idle connection and how many may
open a new one; the pool carries that out by resolving their futures. A waiter given a
permit opens the connection itself, so a cancelled waiter never leaves a socket behind.
Acquiring waits up to `pool_timeout` (None: for ever), then raises PoolTimeoutError; it
never fails at once because the pool is momentarily full.

A leased connection that saw any error, cancellation or timeout (a BLPOP cancelled while
blocked, a transaction interrupted between MULTI and EXEC) is discarded on release, never
reused: its server-side state is unknown. So is one made before `renew()` gave the pool
new settings (CLIENT SETNAME). `aclose()` fails the waiters with
PoolClosedError and closes every connection, leased ones included.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..errors import PoolClosedError, PoolTimeoutError
from .book import assign
from .errors import CommandTimeoutError, LostConnectionError, is_error_reply
from .mux import pack
from .settings import DEFAULT, NodeSettings, close_connection, open_connection

_OPEN: Any = object()  # a waiter's permit to open a new connection


@dataclass(frozen=True, slots=True)
class DedicatedStats:
    """Counters of one node's dedicated pool (a copy)."""

    node: str
    max_connections: int
    idle: int
    leased: int
    opening: int
    waiting: int
    opened: int
    discarded: int
    timeouts: int


class Dedicated:
    """A connection leased to one task; send commands with `execute` (raw replies)."""

    def __init__(self, conn: Connection, settings: NodeSettings) -> None:
        """Wrap a connected redis-py connection (the pool makes these)."""
        self.connection = conn
        self.settings = settings
        self.broken = False  # discard instead of reusing
        self.used = False  # served a command before (a stale socket is possible)
        self._reused = False

    async def execute(self, *args: Any, timeout: float | None = DEFAULT) -> Any:
        """Send one command and read its reply; `timeout` None waits for ever (blocking calls).

        Error replies raise redis-py's ResponseError family and keep the connection;
        anything else (timeout, cancellation, broken socket) marks it for discarding.
        """
        await self.send(*args)
        return await self.read(timeout=timeout)

    async def send(self, *args: Any) -> None:
        """Write one command (for pub/sub and pipelines that read later)."""
        data = pack(self.connection, args)
        await self._send(data)

    async def _send(self, data: bytes) -> None:
        if self.broken or not self.connection.is_connected:
            # redis-py would silently reconnect here, behind the pool's back
            raise LostConnectionError("dedicated connection is closed", node=self.settings.name, sent=False)
        self._reused, self.used = self.used, True
        try:
            await self.connection.send_packed_command([data], check_health=False)
        except BaseException as e:
            self.broken = True
            if isinstance(e, RedisConnectionError | OSError):
                raise self._lost(e) from e
            raise

    def _lost(self, e: BaseException) -> LostConnectionError:
        return LostConnectionError(str(e), node=self.settings.name, sent=True, reused=self._reused)

    async def read(self, *, timeout: float | None = DEFAULT, disable_decoding: bool = False) -> Any:
        """Read one reply (redis-py's parser, no response callback); `disable_decoding`: bytes
        even with decode_responses (redis-py's NEVER_DECODE commands, DUMP)."""
        t = self.settings.socket_timeout if timeout is DEFAULT else timeout
        try:
            async with asyncio.timeout(t):
                return await self.connection.read_response(timeout=math.inf, disconnect_on_error=False,
                                                           disable_decoding=disable_decoding)
        except RedisError as e:
            if is_error_reply(e):
                raise
            self.broken = True
            raise self._lost(e) from e
        except TimeoutError:
            self.broken = True
            raise CommandTimeoutError(t or 0.0, node=self.settings.name, sent=True) from None
        except BaseException as e:
            self.broken = True
            if isinstance(e, RedisConnectionError | OSError):
                raise self._lost(e) from e
            raise

    async def execute_many(self, commands: Sequence[Sequence[Any]], *, timeout: float | None = DEFAULT) -> list[Any]:
        """Write several commands at once and read their replies (errors returned in place)."""
        await self._send(b"".join(pack(self.connection, args) for args in commands))
        out: list[Any] = []
        for _ in commands:
            try:
                out.append(await self.read(timeout=timeout))
            except RedisError as e:
                if not is_error_reply(e):
                    raise
                out.append(e)
        return out


class DedicatedPool:
    """Bounded dedicated connections to one node, handed out oldest waiter first."""

    def __init__(self, settings: NodeSettings, *, max_connections: int = 4, pool_timeout: float | None = None) -> None:
        """No I/O here; connections are opened by the first acquirers."""
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self.settings = settings
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        self._idle: deque[Dedicated] = deque()
        self._leased: set[Dedicated] = set()
        self._total = 0  # idle + leased + being opened
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._closing: set[asyncio.Task[None]] = set()
        self._openers: set[asyncio.Future[None]] = set()
        self._closed = False
        self._opened = self._discarded = self._timeouts = 0

    # ---- acquire / release -----------------------------------------------------------

    async def acquire(self, timeout: float | None = DEFAULT) -> Dedicated:
        """A connection for this task alone; waits up to `timeout` (default `pool_timeout`)."""
        if self._closed:
            raise PoolClosedError(f"dedicated pool of {self.settings.name} is closed")
        t = self.pool_timeout if timeout is DEFAULT else timeout
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._assign()
        try:
            if fut.done():
                grant = fut.result()
            else:
                async with asyncio.timeout(t):
                    grant = await fut
        except BaseException as e:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._give_back(fut.result())  # granted, but we were cancelled / timed out meanwhile
            else:
                fut.cancel()
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
            if isinstance(e, TimeoutError):
                self._timeouts += 1
                raise PoolTimeoutError(
                    f"no dedicated connection to {self.settings.name} became free within {t}s "
                    f"({self.max_connections} in use)"
                ) from None
            raise
        if grant is not _OPEN:
            self._leased.add(grant)
            return grant
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._openers.add(opened)  # aclose() waits for this open to finish
        settings = self.settings  # renew() may replace them while this one opens
        try:
            conn = await open_connection(settings)
        except BaseException:
            self._total -= 1
            self._assign()
            raise
        finally:
            self._openers.discard(opened)
            opened.set_result(None)
        self._opened += 1
        d = Dedicated(conn, settings)
        if self._closed:
            self._total -= 1
            self._close_later(d)
            raise PoolClosedError(f"dedicated pool of {self.settings.name} is closed")
        self._leased.add(d)
        return d

    def release(self, d: Dedicated) -> None:
        """Return a leased connection: reused unless broken (or the pool is closed)."""
        if d not in self._leased:
            return
        self._leased.discard(d)
        if d.broken or self._closed or not d.connection.is_connected or d.settings is not self.settings:
            self._total -= 1
            self._discarded += 1
            self._close_later(d)
        else:
            self._idle.append(d)
        self._assign()

    @asynccontextmanager
    async def lease(self, timeout: float | None = DEFAULT) -> AsyncIterator[Dedicated]:
        """`async with pool.lease() as conn:`; any exception in the block discards the connection."""
        d = await self.acquire(timeout)
        try:
            yield d
        except BaseException:
            d.broken = True
            raise
        finally:
            self.release(d)

    def _give_back(self, grant: Any) -> None:
        if grant is _OPEN:
            self._total -= 1
        else:
            self._idle.appendleft(grant)
        self._assign()

    def _assign(self) -> None:
        waiters = self._waiters
        while waiters and waiters[0].done():  # cancelled ones not yet removed
            waiters.popleft()
        if not waiters:
            return
        a = assign(idle=len(self._idle), total=self._total, limit=self.max_connections, waiting=len(waiters))
        for _ in range(a.reuse):
            waiters.popleft().set_result(self._idle.pop())
        for _ in range(a.open):
            self._total += 1
            waiters.popleft().set_result(_OPEN)

    def _close_later(self, d: Dedicated) -> None:
        task = asyncio.ensure_future(close_connection(d.connection))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def renew(self, settings: NodeSettings) -> None:
        """Connections opened from now on use `settings` (a new client name, say); idle ones are
        closed now, leased ones when returned, so no lessee gets one made with the old settings."""
        self.settings = settings
        self.drop_idle()

    def drop_idle(self) -> int:
        """Close the idle connections (policy's drop_idle: they are likely closed server-side too)."""
        idle, self._idle = list(self._idle), deque()
        self._total -= len(idle)
        self._discarded += len(idle)
        for d in idle:
            self._close_later(d)
        self._assign()
        return len(idle)

    # ---- state -----------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Connections idle, leased or being opened."""
        return self._total

    def stats(self) -> DedicatedStats:
        """A copy of the counters."""
        opening = self._total - len(self._idle) - len(self._leased)
        return DedicatedStats(
            self.settings.name, self.max_connections, len(self._idle), len(self._leased), opening,
            sum(1 for w in self._waiters if not w.done()), self._opened, self._discarded, self._timeouts,
        )

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<DedicatedPool {s.node}: {s.leased} leased, {s.idle} idle, {s.opening} opening "
            f"of {s.max_connections} | {s.waiting} waiting{' | closed' if self._closed else ''}>"
        )

    async def aclose(self) -> None:
        """Fail waiters with PoolClosedError and close every connection, leased ones too."""
        self._closed = True
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_exception(PoolClosedError(f"dedicated pool of {self.settings.name} is closed"))
        for d in [*self._idle, *self._leased]:
            d.broken = True
            self._close_later(d)
        self._total -= len(self._idle) + len(self._leased)
        self._idle.clear()
        self._leased.clear()  # a holder's later release() is a no-op
        while self._closing or self._openers:
            await asyncio.gather(*self._closing, *self._openers, return_exceptions=True)
