"""clusterpool.asyncio pipelines whose commands take different routes (`client.place`'s quick
route, its full route, tasks of execute_command): replies in queue order, as the sync pipeline's."""

from __future__ import annotations

import pytest
from async_helpers import TAG_PREFIX

from redis.exceptions import DataError, ResponseError

from clusterpool import ClusterClient as SyncClient
from clusterpool.asyncio import ClusterClient
from clusterpool.errors import WriteOnReaderError

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def _clean_keys(cluster):
    """Keys on many slots of one node: deleted through the cluster client (drop_test_keys wants one per node)."""
    yield
    with SyncClient(startup_nodes=cluster.startup_nodes) as c:
        keys = list(c.scan_iter(match="{" + TAG_PREFIX + "*", count=1000))
        if keys:
            c.delete(*keys)


def _client(cluster) -> ClusterClient:
    return ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True)


def _mixed(pipe, p: str):
    """Plain SETs over many slots, commands with options, a command routed by its keys, a bytes
    name, a keyless command in the middle and plain commands after it, on shared keys."""
    for i in range(20):
        pipe.set(f"{{{p}{i}}}:k", i)
    pipe.get(f"{{{p}0}}:k").set(f"{{{p}1}}:k", 7, xx=True, get=True).incr(f"{{{p}2}}:k")
    pipe.mset({f"{{{p}m}}:a": 1, f"{{{p}m}}:b": 2}).mget(f"{{{p}m}}:a", f"{{{p}m}}:b")
    pipe.execute_command(b"GET", f"{{{p}1}}:k").execute_command("ECHO", "mid")
    for i in range(20):
        pipe.incr(f"{{{p}{i}}}:k").get(f"{{{p}{i}}}:k")
    return pipe


async def test_a_pipeline_of_every_route_gives_the_sync_pipelines_replies_in_order(cluster):
    with SyncClient(startup_nodes=cluster.startup_nodes, decode_responses=True) as sync:
        expected = _mixed(sync.pipeline(), f"{TAG_PREFIX}ms").execute()
    async with _client(cluster) as c:
        got = await _mixed(c.pipeline(), f"{TAG_PREFIX}ma").execute()
    assert got == expected


async def test_a_pipeline_set_with_options_takes_redis_pys_checks(cluster):
    async with _client(cluster) as c:
        with pytest.raises(DataError):
            c.pipeline().set(f"{{{TAG_PREFIX}o}}:k", "v", ex=10, px=10)
        k = f"{{{TAG_PREFIX}o}}:k"
        assert await c.pipeline().set(k, "a").set(k, "b", nx=True).get(k).execute() == [True, None, "a"]


async def test_a_write_in_a_write_refusing_pipeline_is_refused_in_its_place(cluster):
    async with _client(cluster) as c:
        k = f"{{{TAG_PREFIX}r}}:k"
        await c.set(k, "v")
        view = c.with_read_from("primary", refuse_writes=True)  # the reader's refusal, without replica lag
        replies = await view.pipeline().get(k).set(k, "w").get(k).execute(raise_on_error=False)
        assert replies[0] == "v" and isinstance(replies[1], WriteOnReaderError) and replies[2] == "v"


async def test_an_error_reply_in_a_long_pipeline_is_raised_with_its_position(cluster):
    async with _client(cluster) as c:
        k = f"{{{TAG_PREFIX}e}}:k"
        pipe = c.pipeline()
        for i in range(300):
            pipe.set(f"{{{TAG_PREFIX}e{i}}}:k", i)
        pipe.set(k, "text").incr(k)
        with pytest.raises(ResponseError, match=r"Command # 302 \(INCRBY \{cpasynce\}:k 1\) of pipeline caused error"):
            await pipe.execute()
