"""clusterpool.pool.ConnectionPool with a fake connection over a real socketpair."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from clusterpool.errors import PoolClosedError, PoolTimeoutError
from clusterpool.pool import ConnectionPool


class FakeConnection:
    """Just what the pool touches: `is_connected`, the socket (`_sock`, as redis-py keeps it),
    `connect()`, `disconnect()`."""

    def __init__(self) -> None:
        self._sock, self.peer = socket.socketpair()
        self.connects = 0
        self.disconnects = 0

    @property
    def is_connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        self.connects += 1
        if self._sock is None:
            self._sock, self.peer = socket.socketpair()

    def disconnect(self) -> None:
        self.disconnects += 1
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def cleanup(self) -> None:
        for s in (self._sock, self.peer):
            if s is not None:
                s.close()


@pytest.fixture
def made():
    conns: list[FakeConnection] = []
    yield conns
    for c in conns:
        c.cleanup()


@pytest.fixture
def make_pool(made):
    pools: list[ConnectionPool] = []

    def factory_pool(**kw):
        def factory():
            c = FakeConnection()
            made.append(c)
            return c

        kw.setdefault("timeout", 0.05)
        p = ConnectionPool("node-a:7000", factory, **kw)
        pools.append(p)
        return p

    yield factory_pool
    for p in pools:
        p.close()


def _wait_until(cond, limit=5.0):
    """Spin (no sleeping) until cond() is true; fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")


# ---------------------------------------------------------------- acquire / release


def test_max_connections_below_one_is_rejected():
    with pytest.raises(ValueError):
        ConnectionPool("n", FakeConnection, max_connections=0)


def test_acquire_opens_new_connection(make_pool, made):
    pool = make_pool()
    c = pool.acquire()
    assert made == [c]
    assert pool.stats().size == 1 and pool.stats().in_use == 1


def test_released_connection_is_reused(make_pool, made):
    pool = make_pool()
    c = pool.acquire()
    pool.release(c)
    assert pool.acquire() is c
    assert len(made) == 1


def test_idle_connections_are_reused_lifo(make_pool):
    pool = make_pool()
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    pool.release(a)
    pool.release(b)
    pool.release(c)
    assert pool.acquire() is c
    assert pool.acquire() is b
    assert pool.acquire() is a


def test_pool_never_exceeds_max_connections(make_pool, made):
    pool = make_pool(max_connections=2)
    pool.acquire()
    pool.acquire()
    with pytest.raises(PoolTimeoutError):
        pool.acquire()
    assert len(made) == 2
    assert pool.stats().size == 2


def test_timeout_error_names_node_and_counts(make_pool):
    pool = make_pool(max_connections=2, timeout=0.05)
    pool.acquire()
    pool.acquire()
    with pytest.raises(PoolTimeoutError) as ei:
        pool.acquire()
    msg = str(ei.value)
    assert "node-a:7000" in msg
    assert "in use 2" in msg
    assert "idle 0" in msg
    assert "max_connections 2" in msg


def test_timeout_is_counted(make_pool):
    pool = make_pool(max_connections=1)
    pool.acquire()
    with pytest.raises(PoolTimeoutError):
        pool.acquire()
    assert pool.stats().timeouts == 1
    assert pool.stats().waiting == 0


def test_acquire_timeout_argument_overrides_default(make_pool):
    pool = make_pool(max_connections=1, timeout=None)
    pool.acquire()
    with pytest.raises(PoolTimeoutError):
        pool.acquire(timeout=0.01)


def test_waiting_acquirer_gets_connection_released_by_other_thread(make_pool):
    pool = make_pool(max_connections=1, timeout=10)
    held = pool.acquire()
    got: list[object] = []
    done = threading.Event()

    def waiter():
        got.append(pool.acquire())
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    _wait_until(lambda: pool.stats().waiting == 1)
    assert not done.is_set()
    pool.release(held)
    assert done.wait(10)
    t.join(10)
    assert got == [held]
    assert pool.stats().waiting == 0


def test_release_of_disconnected_connection_drops_it(make_pool):
    pool = make_pool()
    a, b = pool.acquire(), pool.acquire()
    pool.release(b)
    a.disconnect()
    assert a._sock is None
    pool.release(a)
    s = pool.stats()
    assert s.size == 1 and s.idle == 1 and s.in_use == 0
    assert s.closed == 1
    assert pool.acquire() is b


def test_dropped_connection_frees_room_for_new_one(make_pool, made):
    pool = make_pool(max_connections=1)
    a = pool.acquire()
    pool.discard(a)
    b = pool.acquire()
    assert b is not a
    assert len(made) == 2


def test_release_of_foreign_connection_is_ignored(make_pool, made):
    pool = make_pool()
    stranger = FakeConnection()
    made.append(stranger)
    pool.release(stranger)
    assert pool.stats().size == 0 and pool.stats().idle == 0


def test_factory_error_frees_the_slot():
    calls = []

    def factory():
        calls.append(1)
        raise OSError("refused")

    pool = ConnectionPool("n", factory, max_connections=1, timeout=0.05)
    for _ in range(2):
        with pytest.raises(OSError):
            pool.acquire()
    s = pool.stats()
    assert s.size == 0 and s.errors == 2
    assert len(calls) == 2


def test_stats_consistent_under_threads(make_pool):
    pool = make_pool(max_connections=4, timeout=30)
    n_threads, rounds = 8, 500
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def work():
        try:
            start.wait()
            for _ in range(rounds):
                c = pool.acquire()
                s = pool.stats()
                assert s.in_use + s.idle == s.size
                assert 1 <= s.in_use <= s.size <= 4
                pool.release(c)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    s = pool.stats()
    assert s.in_use + s.idle == s.size
    assert s.in_use == 0
    assert s.size <= 4
    assert s.created == s.size
    assert s.acquires == n_threads * rounds
    assert s.waiting == 0
    assert s.timeouts == 0


def test_repr_shows_counts(make_pool):
    pool = make_pool(max_connections=3)
    pool.release(pool.acquire())
    pool.acquire()
    assert "1 in use, 0 idle, 1/3" in repr(pool)


# ---------------------------------------------------------------- close


def test_close_makes_acquire_raise(make_pool):
    pool = make_pool()
    pool.close()
    assert pool.closed
    with pytest.raises(PoolClosedError):
        pool.acquire()


def test_close_disconnects_idle_connections(make_pool):
    pool = make_pool()
    a, b = pool.acquire(), pool.acquire()
    pool.release(a)
    pool.release(b)
    pool.close()
    assert a._sock is None and b._sock is None
    assert pool.stats().size == 0 and pool.stats().idle == 0


def test_close_wakes_waiter_with_pool_closed_error(make_pool):
    pool = make_pool(max_connections=1, timeout=10)
    pool.acquire()
    raised: list[BaseException] = []

    def waiter():
        try:
            pool.acquire()
        except BaseException as e:  # noqa: BLE001
            raised.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    _wait_until(lambda: pool.stats().waiting == 1)
    pool.close()
    t.join(10)
    assert len(raised) == 1 and isinstance(raised[0], PoolClosedError)


def test_close_is_idempotent(make_pool):
    pool = make_pool()
    pool.acquire()
    pool.close()
    pool.close()
    assert pool.stats().size == 0


def test_release_after_close_does_not_resurrect(make_pool):
    pool = make_pool()
    c = pool.acquire()
    pool.close()
    pool.release(c)
    assert pool.stats().size == 0 and pool.stats().idle == 0


# ---------------------------------------------------------------- eviction / disconnect_all


def test_evict_idle_without_max_idle_time_does_nothing(make_pool):
    pool = make_pool()
    pool.release(pool.acquire())
    assert pool.evict_idle() == 0
    assert pool.stats().idle == 1


def test_evict_idle_closes_idle_connections(make_pool):
    pool = make_pool(max_idle_time=0)
    conns = [pool.acquire() for _ in range(3)]
    for c in conns:
        pool.release(c)
    assert pool.evict_idle() == 3
    assert all(c._sock is None for c in conns)
    s = pool.stats()
    assert s.size == 0 and s.idle == 0 and s.closed == 3


def test_evict_idle_keeps_freshest(make_pool):
    pool = make_pool(max_idle_time=0)
    a, b, c = pool.acquire(), pool.acquire(), pool.acquire()
    for x in (a, b, c):
        pool.release(x)
    assert pool.evict_idle(keep=1) == 2
    assert c._sock is not None
    assert a._sock is None and b._sock is None
    assert pool.stats().size == 1
    assert pool.acquire() is c


def test_evict_idle_leaves_in_use_connections(make_pool):
    pool = make_pool(max_idle_time=0)
    busy = pool.acquire()
    pool.release(pool.acquire())
    assert pool.evict_idle() == 1
    assert busy._sock is not None
    assert pool.stats().in_use == 1


def test_disconnect_all_closes_idle_now(make_pool):
    pool = make_pool()
    idle = pool.acquire()
    pool.release(idle)
    pool.disconnect_all()
    assert idle._sock is None
    assert pool.stats().size == 0


def test_disconnect_all_drops_in_use_connection_when_returned(make_pool):
    pool = make_pool()
    busy = pool.acquire()
    pool.disconnect_all()
    assert busy._sock is not None  # not closed under the user's feet
    assert pool.stats().size == 1
    pool.release(busy)
    assert busy._sock is None
    s = pool.stats()
    assert s.size == 0 and s.idle == 0


def test_connections_opened_after_disconnect_all_are_kept(make_pool):
    pool = make_pool()
    pool.disconnect_all()
    c = pool.acquire()
    pool.release(c)
    assert c._sock is not None
    assert pool.stats().idle == 1


# ---------------------------------------------------------------- validation


def test_validate_disconnects_idle_connection_closed_by_peer(make_pool):
    pool = make_pool(validate_after=0)
    c = pool.acquire()
    pool.release(c)
    c.peer.close()
    c.peer = None
    assert pool.acquire() is c
    assert c._sock is None
    assert c.disconnects == 1


def test_validate_disconnects_idle_connection_with_unread_data(make_pool):
    pool = make_pool(validate_after=0)
    c = pool.acquire()
    pool.release(c)
    c.peer.sendall(b"-junk\r\n")
    assert pool.acquire() is c
    assert c._sock is None


def test_validate_keeps_healthy_idle_connection(make_pool):
    pool = make_pool(validate_after=0)
    c = pool.acquire()
    pool.release(c)
    assert pool.acquire() is c
    assert c._sock is not None
    assert c.disconnects == 0


def test_no_validation_before_validate_after(make_pool):
    pool = make_pool(validate_after=3600)
    c = pool.acquire()
    pool.release(c)
    c.peer.close()
    c.peer = None
    assert pool.acquire() is c
    assert c._sock is not None


# ---------------------------------------------------------------- fill


def test_fill_opens_and_connects_idle_connections(make_pool, made):
    pool = make_pool(max_connections=5)
    assert pool.fill(3) == 3
    assert pool.stats().idle == 3
    assert all(c.connects == 1 for c in made)


def test_fill_respects_max_connections(make_pool):
    pool = make_pool(max_connections=2)
    assert pool.fill(5) == 2
    assert pool.stats().size == 2
