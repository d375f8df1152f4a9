"""NodeConnection's lean send/read (the router's single-command path) raise what redis-py's
send_packed_command/read_response raise."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from clusterpool.connection import make_connection, pack_one
from clusterpool.slots import key_slot

PORT_KEY: dict[int, str] = {}


def key_on(cluster, port):
    """A key whose slot that primary serves (commands on it are not redirected)."""
    if port not in PORT_KEY:
        owned = set(cluster.slots_of(port))
        PORT_KEY[port] = next(k for k in (f"conn-live:{i}" for i in range(100000)) if key_slot(k.encode()) in owned)
    return PORT_KEY[port]


@pytest.fixture
def conn(cluster):
    port = cluster.primaries()[0]
    c = make_connection(cluster.host, port, {"socket_timeout": 0.2}, ssl=False, readonly=False)
    c.test_key = key_on(cluster, port)
    c.connect()
    yield c
    c.disconnect()


def test_reply_is_read(conn):
    conn.send_packed(pack_one(conn, ("ECHO", "hi")))
    assert conn.read_reply() == b"hi"


def test_error_reply_raises_and_connection_stays_usable(conn):
    conn.send_packed(pack_one(conn, ("INCR", conn.test_key, "extra")))
    with pytest.raises(rx.ResponseError):
        conn.read_reply()
    conn.send_packed(pack_one(conn, ("PING",)))
    assert conn.read_reply() in (b"PONG", True)


def test_read_timeout_raises_timeout_error_and_disconnects(conn):
    conn.send_packed(pack_one(conn, ("BLPOP", conn.test_key, 2)))
    with pytest.raises(rx.TimeoutError):
        conn.read_reply()
    assert conn._sock is None


def test_send_connects_a_disconnected_connection(conn):
    conn.disconnect()
    conn.send_packed(pack_one(conn, ("PING",)))
    assert conn.read_reply() in (b"PONG", True)


def test_read_timeout_through_redis_py_read_response_is_a_timeout_error(conn):
    conn.send_command("BLPOP", conn.test_key, 2)
    with pytest.raises(rx.TimeoutError):
        conn.read_response()


def test_socket_with_a_timeout_is_blocking_with_the_kernel_enforcing_it(conn):
    # no poll() before every send and receive; SO_RCVTIMEO carries socket_timeout instead
    assert conn._sock.gettimeout() is None
    conn.send_packed(pack_one(conn, ("PING",)))
    assert conn.read_reply() in (b"PONG", True)


# ---- limit / unlimit: a call's deadline cuts one attempt's timeouts, then they are back ----


def _blpop_takes(conn, seconds):
    """BLPOP on an empty key that the server answers with nil after `seconds`."""
    conn.send_packed(pack_one(conn, ("BLPOP", "{" + conn.test_key + "}:empty", seconds)))
    return conn.read_reply()


def test_a_limit_cuts_the_read_timeout_and_unlimit_gives_it_back(conn):
    conn.limit(0.05)
    with pytest.raises(rx.TimeoutError):
        _blpop_takes(conn, 0.15)  # its own 0.2 s would have been enough
    conn.unlimit()
    conn.connect()
    assert _blpop_takes(conn, 0.1) is None  # 0.2 s again


@pytest.mark.parametrize("own", [None, 0.5])
def test_a_limit_longer_than_the_own_timeouts_changes_nothing_and_unlimit_restores_no_timeout(cluster, own):
    port = cluster.primaries()[0]
    c = make_connection(cluster.host, port, {"socket_timeout": own}, ssl=False, readonly=False)
    c.test_key = key_on(cluster, port)
    c.connect()
    try:
        c.limit(0.05)
        c.unlimit()
        assert c.socket_timeout == own
        assert _blpop_takes(c, 0.2) is None  # neither the limit's 0.05 s nor a stale kernel timeout
    finally:
        c.disconnect()
