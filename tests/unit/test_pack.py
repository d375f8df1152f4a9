"""clusterpool.connection.pack_one: the wire bytes redis-py's own packer makes."""

from __future__ import annotations

import pytest
from redis.connection import Connection
from redis.exceptions import DataError

from clusterpool.connection import pack_one


@pytest.fixture
def conn():
    return Connection(host="127.0.0.1", port=1)


@pytest.mark.parametrize("args", [
    ("GET", "k"),
    ("SET", b"k", b"v", "EX", 10),
    ("SET", "clé", 1.5),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT LIST",),
    ("HSET", "h", memoryview(b"f"), bytearray(b"v")),
])
def test_pack_one_matches_redis_py(conn, args):
    assert pack_one(conn, args) == b"".join(conn.pack_command(*args))


def test_pack_one_rejects_what_redis_py_rejects(conn):
    with pytest.raises(DataError):
        pack_one(conn, ("SET", "k", True))
