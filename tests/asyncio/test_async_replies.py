"""Error replies that redis-py maps to ConnectionError subclasses (LOADING, NOAUTH) are replies:
the shared connection delivers them to their caller and stays up.

A real server cannot be made to answer LOADING on demand, so this module alone talks to a
tiny RESP responder on loopback that answers the handshake and then LOADING to GET.
"""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio
from redis.exceptions import AuthenticationError, BusyLoadingError

from clusterpool.asyncio import MuxConnection, NodeConnections, NodeSettings

pytestmark = pytest.mark.asyncio

# HELLO gets what a Redis 7 server answers (a RESP3 map with proto and version): redis-py 8.2
# reads the handshake as that map and fails on anything else
_HELLO = (b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
          b"$5\r\nproto\r\n:3\r\n")
_REPLIES = {b"GET": b"-LOADING Redis is loading the dataset in memory\r\n", b"PING": b"+PONG\r\n",
            b"SET": b"-NOAUTH Authentication required.\r\n", b"HELLO": _HELLO}


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            n = int(line[1:])
            words = []
            for _ in range(n):
                size = int((await reader.readline())[1:])
                words.append((await reader.readexactly(size + 2))[:-2])
            writer.write(_REPLIES.get(words[0].upper(), b"+OK\r\n"))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest_asyncio.fixture
async def responder():
    server = await asyncio.start_server(_serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_loading_and_noauth_replies_reach_their_caller_and_keep_the_connection(responder):
    mux = await MuxConnection.open(NodeSettings.make("127.0.0.1", responder))
    results = await asyncio.gather(mux.execute("GET", "k"), mux.execute("PING"), mux.execute("SET", "k", 1),
                                   mux.execute("PING"), return_exceptions=True)
    assert isinstance(results[0], BusyLoadingError)
    assert isinstance(results[2], AuthenticationError)
    assert results[1] == results[3] == b"PONG"
    assert mux.usable
    await mux.aclose()


async def test_a_loading_reply_on_a_dedicated_connection_keeps_it(responder):
    node = NodeConnections(NodeSettings.make("127.0.0.1", responder))
    async with node.lease() as conn:
        with pytest.raises(BusyLoadingError):
            await conn.execute("GET", "k")
        assert await conn.execute("PING") == b"PONG"
        assert not conn.broken
    assert node.dedicated.stats().idle == 1
    await node.aclose()
