"""One node's connection pool: bounded, blocking acquire with timeout, warm and evicted idle.

How this works: idle connections sit in a LIFO list with the time they were
returned. `acquire` takes the freshest idle one, or opens a new one while the
pool is under `max_connections`, or waits on a condition until one is returned
or `timeout` passes. Connections are opened and closed outside the lock.
A connection idle longer than `validate_after` is checked without a round trip
(a readable idle socket means the server closed it or sent junk) and replaced.
After fork, the child drops the parent's connections without closing them.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.connection import AbstractConnection

from ._redispy import raw_socket
from .errors import PoolClosedError, PoolTimeoutError
from .snapshots import PoolStats

# The process id, kept current by a fork hook: cheaper than os.getpid() (a system
# call) on every acquire, and still tells a forked child from its parent.
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def current_pid() -> int:
    return _pid


class ConnectionPool:
    """A bounded pool of redis-py connections to one node."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], AbstractConnection],
        max_connections: int = 50,
        timeout: float | None = 5.0,
        validate_after: float = 1.0,
        max_idle_time: float | None = None,
        validate_on_return: bool = False,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self.name = name
        self._factory = factory
        self.max_connections = max_connections
        self.timeout = timeout
        self.validate_after = validate_after
        self.max_idle_time = max_idle_time
        self.validate_on_return = validate_on_return
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._idle: list[tuple[AbstractConnection, float]] = []
        self._in_use: set[AbstractConnection] = set()
        self._size = 0
        self._waiting = 0
        self._closed = False
        self._generation = 0
        self._pid = os.getpid()
        self.created = self.closed_count = self.timeouts = self.errors = self.acquires = 0
        self.wait_time_total = 0.0

    # ---------------------------------------------------------------- acquire/release

    def acquire(self, timeout: float | None = -1.0) -> AbstractConnection:
        """A connection for exclusive use; give it back with `release`."""
        if self._pid != _pid:
            self._reset_after_fork()
        with self._lock:
            if self._closed:
                raise PoolClosedError(f"pool for {self.name} is closed")
            self.acquires += 1
            idle = self._idle
            if idle:  # the common case, inline (_take + _ready): one command's acquire costs a few calls less
                conn, since = idle.pop()
                self._in_use.add(conn)
                got = None
            else:
                got = self._take()
                if got is None:
                    got = self._wait(self.timeout if timeout == -1.0 else timeout)
        if got is not None:
            return self._ready(*got)
        if self.validate_after is not None and time.monotonic() - since > self.validate_after:
            self.validate(conn)
        return conn

    def try_acquire(self) -> AbstractConnection | None:
        """A connection if one is free (or may be opened) right now, else None.

        For the maintenance thread: it neither waits nor counts as a command's
        acquire or timeout, so it never shows up in the pool's statistics.
        """
        if self._pid != _pid:
            self._reset_after_fork()
        with self._lock:
            got = None if self._closed else self._take()
        return None if got is None else self._ready(*got)

    def _take(self) -> tuple[AbstractConnection | None, float] | None:
        """(lock held) An idle connection, or (None, 0) with room reserved for a new one, or None."""
        if self._idle:
            conn, since = self._idle.pop()
            self._in_use.add(conn)
            return conn, since
        if self._size < self.max_connections:
            self._size += 1
            return None, 0.0
        return None

    def _ready(self, conn: AbstractConnection | None, since: float) -> AbstractConnection:
        """Open the reserved connection, or check an idle one that sat long enough to have died."""
        if conn is None:
            return self._open()
        if self.validate_after is not None and time.monotonic() - since > self.validate_after:
            self.validate(conn)
        return conn

    def _open(self) -> AbstractConnection:
        try:
            conn = self._factory()
        except BaseException:
            with self._lock:
                self._size -= 1
                self.errors += 1
                self._cond.notify()
            raise
        with self._lock:
            self.created += 1
            conn.pool_generation = self._generation  # type: ignore[attr-defined]
            self._in_use.add(conn)
        return conn

    def _wait(self, timeout: float | None) -> tuple[Any, float]:
        """Wait (lock held) for an idle connection or room for a new one."""
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        self._waiting += 1
        try:
            while True:
                if self._closed:
                    raise PoolClosedError(f"pool for {self.name} is closed")
                got = self._take()
                if got is not None:
                    return got
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self.timeouts += 1
                    raise PoolTimeoutError(
                        f"no connection to {self.name} became free within {timeout}s "
                        f"(in use {len(self._in_use)}, idle {len(self._idle)}, "
                        f"waiting {self._waiting - 1}, max_connections {self.max_connections}); "
                        "raise max_connections or pool_timeout, or lower concurrency"
                    )
                self._cond.wait(remaining)
        finally:
            self._waiting -= 1
            self.wait_time_total += time.monotonic() - start

    def release(self, conn: AbstractConnection) -> None:
        """Give a connection back. A disconnected one is dropped, freeing its slot."""
        if self._pid != _pid:
            return
        if self.validate_on_return and conn.is_connected:
            self.validate(conn)  # a connection left with unread data or closed is dropped, not reused
        with self._lock:
            in_use = self._in_use
            if conn not in in_use:
                return  # not ours (pool reset or closed meanwhile)
            in_use.remove(conn)
            if self._closed or not conn.is_connected or getattr(conn, "pool_generation", 0) != self._generation:
                self._size -= 1
                self.closed_count += 1
                drop = True
            else:
                self._idle.append((conn, time.monotonic()))
                drop = False
            if self._waiting:
                self._cond.notify()
        if drop:
            conn.disconnect()

    def discard(self, conn: AbstractConnection) -> None:
        """Close a connection that must not be reused (broken mid-command)."""
        conn.disconnect()
        self.release(conn)

    def validate(self, conn: AbstractConnection) -> None:
        """Reopen an idle connection whose socket is readable (closed by the server)."""
        sock = raw_socket(conn)
        if sock is None:
            return
        # a poll object per socket, kept on the connection: half the cost of select.select([sock], ...),
        # and the router checks before every write on a pooled connection
        watch = getattr(conn, "pool_poll", None)
        try:
            if watch is None or watch[0] is not sock:
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                watch = conn.pool_poll = (sock, poller)  # type: ignore[attr-defined]
            readable = bool(watch[1].poll(0))
        except (OSError, ValueError):
            readable = True
        if readable:
            conn.disconnect()  # reconnects on next send

    # ---------------------------------------------------------------- maintenance

    def fill(self, count: int) -> int:
        """Open connections until `count` are idle (min_idle); returns how many were opened."""
        opened = 0
        while True:
            with self._lock:
                if self._closed or len(self._idle) >= count or self._size >= self.max_connections:
                    return opened
                self._size += 1
            conn = self._open()
            try:
                conn.connect()
            except BaseException:
                self.discard(conn)
                raise
            self.release(conn)
            opened += 1

    def evict_idle(self, keep: int = 0) -> int:
        """Close connections idle longer than max_idle_time, keeping `keep` idle."""
        if self.max_idle_time is None:
            return 0
        cutoff = time.monotonic() - self.max_idle_time
        with self._lock:
            # _idle is oldest-first; keep the freshest `keep`
            stale = [(c, t) for c, t in self._idle[: max(len(self._idle) - keep, 0)] if t < cutoff]
            for item in stale:
                self._idle.remove(item)
            self._size -= len(stale)
            self.closed_count += len(stale)
            if stale:
                self._cond.notify_all()
        for conn, _ in stale:
            conn.disconnect()
        return len(stale)

    def disconnect_all(self) -> None:
        """Close idle connections now and in-use ones when they are returned (node went bad)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._size -= len(idle)
            self.closed_count += len(idle)
            self._generation += 1  # connections in use now are dropped when returned
            self._cond.notify_all()
        for conn, _ in idle:
            conn.disconnect()

    def close(self) -> None:
        """Close every connection; waiters get PoolClosedError. Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            in_use = list(self._in_use)
            self._in_use.clear()
            self._size = 0
            self.closed_count += len(idle) + len(in_use)
            self._cond.notify_all()
        for conn in [c for c, _ in idle] + in_use:
            try:
                conn.disconnect()
            except Exception:
                pass

    def _reset_after_fork(self) -> None:
        """In a forked child: forget the parent's connections without touching their sockets."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._idle = []
        self._in_use = set()
        self._size = 0
        self._waiting = 0
        self._pid = os.getpid()

    # ---------------------------------------------------------------- observability

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(
                node=self.name,
                max_connections=self.max_connections,
                size=self._size,
                in_use=self._size - len(self._idle),
                idle=len(self._idle),
                waiting=self._waiting,
                created=self.created,
                closed=self.closed_count,
                timeouts=self.timeouts,
                errors=self.errors,
                acquires=self.acquires,
                wait_time_total=self.wait_time_total,
            )

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<ConnectionPool {self.name} | Connections: {s.in_use} in use, {s.idle} idle, "
            f"{s.size}/{s.max_connections} | Requests: {s.waiting} waiting>"
        )
