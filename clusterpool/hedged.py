"""Hedged reads for the sync client: the I/O of one hedged attempt (the decisions are hedging.py's).

How this works: the router has written a hedgeable read on connection A of its node and calls
`read_hedged` instead of reading the reply. It waits for A to become readable up to the
policy's delay; if A is late, the budget allows and the shard has a second usable node, the
same command is written on a connection B from that node's pool and whichever socket turns
readable first gives the reply. A connection whose reply is still to come never goes back to
its pool: a late hedge B is closed; a late A is held (`HedgedReads.held`) until its reply is
read and dropped (then it is pooled again) or its read timeout passes (then it is closed),
so no later command can read a reply that is not its own, and a slow node does not pay a
reconnect for every hedge that beat it (up to half its pool: past that the connection is
closed instead). Held connections are swept at the next hedged read;
closing the client closes them with the pools. When B fails (an error reply or a broken
connection) the read waits for A as if no hedge had been sent; A's own failures reach the
router as they would without hedging.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from redis import exceptions as rx
from redis.connection import AbstractConnection

from ._redispy import raw_socket
from .connection import pack_one
from .pool import current_pid
from .hedging import Hedger, HedgeStats, second_node
from .readfrom import NodeStates
from .topology import Topology


def _buffered(conn: AbstractConnection) -> bool:
    """Whether a TLS socket holds decrypted bytes that poll() cannot see."""
    sock = raw_socket(conn)
    return type(sock) is not socket.socket and isinstance(sock, ssl.SSLSocket) and sock.pending() > 0


def _readable(conns: Sequence[AbstractConnection], timeout: float | None) -> list[AbstractConnection]:
    """Those of `conns` with a reply to read within `timeout` seconds (None: no limit); an
    empty list when the time ran out. select() for its microsecond timeout (poll() rounds up
    to whole milliseconds); poll() when a descriptor is past select()'s FD_SETSIZE."""
    ready = [c for c in conns if _buffered(c)]
    if ready:
        return ready
    socks = {raw_socket(c): c for c in conns}
    wait = None if timeout is None else max(timeout, 0.0)
    try:
        got = select.select(list(socks), [], [], wait)[0]
    except ValueError:
        poller = select.poll()
        by_fd = {s.fileno(): s for s in socks}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        got = [by_fd[fd] for fd, _ in poller.poll(None if wait is None else wait * 1000)]
    return [socks[s] for s in got]


def _left(conn: AbstractConnection, start: float) -> float | None:
    """What is left of the connection's read timeout (None: it has none)."""
    timeout = conn.socket_timeout
    return None if not timeout else timeout - (time.monotonic() - start)


def _timed_out(conn: AbstractConnection) -> rx.TimeoutError:
    conn.disconnect()
    return rx.TimeoutError(f"Timeout reading from {conn.host}:{conn.port}")  # type: ignore[attr-defined]


class HedgedReads:
    """One client's hedging (shared by its views): the pure `Hedger` and the connections held
    until their late reply is read and dropped."""

    def __init__(self, hedger: Hedger) -> None:
        self.hedger = hedger
        self.held: list[tuple[Any, AbstractConnection, float]] = []  # (pool, connection, give up at)
        self._lock = threading.Lock()
        self._pid = current_pid()

    def stats(self) -> HedgeStats:
        """The counters, with the connections held now."""
        return replace(self.hedger.stats(), held=len(self.held))

    def hold(self, pool: Any, conn: AbstractConnection, start: float) -> None:
        """Keep `conn` out of its pool until its reply is read (or its read timeout passes); closed
        instead when half the pool's connections are held already (a node slow on every read
        would otherwise have all its connections waiting for late replies)."""
        timeout = conn.socket_timeout or 30.0
        limit = max(1, pool.max_connections // 2)
        self._forked()
        with self._lock:
            full = sum(1 for p, _, _ in self.held if p is pool) >= limit
            if not full:
                self.held.append((pool, conn, start + timeout))
        if full:
            pool.discard(conn)

    def _forked(self) -> bool:
        """In a forked child, forget the parent's held connections (never read their sockets) and
        its lock (a thread may have held it at the fork); whether that was the case."""
        if self._pid == current_pid():
            return False
        self._lock = threading.Lock()
        self.held = []
        self._pid = current_pid()
        return True

    def sweep(self) -> None:
        """Read and drop the late replies that arrived: those connections go back to their pools;
        ones past their read timeout are closed."""
        if self._forked():
            return
        with self._lock:
            held, self.held = self.held, []
        if not held:
            return
        now = time.monotonic()
        ready = set(_readable([c for _, c, _ in held], 0.0))
        keep = []
        for pool, conn, until in held:
            if conn in ready:
                try:
                    conn.read_reply(True)  # type: ignore[attr-defined]
                except rx.ResponseError:
                    pass  # an error reply is a whole reply too
                except Exception:
                    pool.discard(conn)
                    continue
                pool.release(conn)
            elif now >= until:
                pool.discard(conn)
            else:
                keep.append((pool, conn, until))
        if keep:
            with self._lock:
                self.held.extend(keep)

    def read(self, conn: AbstractConnection, pool: Any, name: str, slot: int, args: Sequence[Any], raw: bool,
             topo: Topology | None, states: NodeStates, zone: str | None,
             pools: Callable[[str], tuple[Any, Any]]) -> tuple[Any, bool]:
        """The reply to the read just written on `conn` (node `name`, from `pool`), hedged on another
        node of the slot's shard when `conn` is late; `pools(node_name)` gives that node's (state,
        pool). Returns (reply, held): held means `conn` is kept here until its own reply is read,
        so the caller must not release it. Raises what reading `conn` raises when its reply is the
        one taken."""
        hedger = self.hedger
        if self.held:
            self.sweep()
        shard = topo.slot_table[slot] if topo is not None else None
        sid = shard.id if shard is not None else ""
        start = time.monotonic()
        hedger.read(start)
        if not _readable((conn,), hedger.delay(sid)):
            second = None if shard is None else second_node(shard, name, states, zone, hedger.policy.to_primary)
            other = None if second is None else _send_hedge(hedger, pools(second.name), args)
            if other is not None:
                b_pool, b = other
                b_start = time.monotonic()
                ready = _readable((conn, b), _left(conn, start))
                if ready and conn not in ready:
                    reply = _hedge_reply(b_pool, b, raw)
                    if reply is not _FAILED:
                        now = time.monotonic()
                        hedger.won()
                        hedger.timed(sid, second.name, now - b_start)  # type: ignore[union-attr]
                        hedger.timed(sid, name, now - start)  # at least that long
                        self.hold(pool, conn, start)
                        return reply, True
                else:
                    b_pool.discard(b)  # its reply is still to come: closed rather than pooled
                if not ready:
                    raise _timed_out(conn)
            if not _readable((conn,), _left(conn, start)):
                raise _timed_out(conn)
        reply = conn.read_reply(raw)  # type: ignore[attr-defined]
        hedger.timed(sid, name, time.monotonic() - start)
        return reply, False


_FAILED = object()


def _send_hedge(hedger: Hedger, found: tuple[Any, Any], args: Sequence[Any]) -> tuple[Any, AbstractConnection] | None:
    """Write the hedge on a free connection of the second node, if the budget allows: None when
    the node's breaker is open, it has no free connection now (a hedge never waits for one),
    the budget says no, or the write fails."""
    st, pool = found
    if st.open_until and not st.available():
        return None
    try:
        b = pool.try_acquire()
    except Exception:  # a pool closed meanwhile
        return None
    if b is None:
        return None
    if not hedger.try_hedge(time.monotonic()):
        pool.release(b)
        return None
    try:
        b.send_packed(pack_one(b, args))  # connects first when needed
    except Exception:
        pool.discard(b)
        return None
    return pool, b


def _hedge_reply(pool: Any, b: AbstractConnection, raw: bool) -> Any:
    """The hedge's reply, its connection back in its pool; _FAILED (the connection released or
    discarded) when the hedge met an error reply (MOVED, LOADING ...) or a broken connection."""
    try:
        reply = b.read_reply(raw)  # type: ignore[attr-defined]
    except rx.ResponseError:
        pool.release(b)
        return _FAILED
    except Exception:
        pool.discard(b)
        return _FAILED
    pool.release(b)
    return reply
