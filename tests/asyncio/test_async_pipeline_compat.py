"""Pipelines of the asyncio client against redis.asyncio's RedisCluster, on the session cluster.

Every test runs twice through one parametrized fixture, on redis.asyncio's RedisCluster and on
ours: queueing (chainable calls, per-slot splitting of delete/exists/touch and mset_nonatomic,
concurrent pipelines on one client), the methods RedisCluster blocks in pipelines, the text of
a failed command's error, and TOUCH/EXISTS across slots (new in redis-py 8.2).
"""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from typing import Any

import pytest
import pytest_asyncio
from async_helpers import KINDS, TAG_PREFIX, compared_client
from redis import exceptions as rx
from redis.asyncio.cluster import ClusterPipeline as RedisAsyncioPipeline
from redis.asyncio.cluster import RedisCluster

from clusterpool import ClusterClient as SyncClient
from clusterpool.batchrules import BLOCKED_METHODS
from clusterpool.slots import key_slot
from compat import REDIS_PY

pytestmark = pytest.mark.asyncio

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


@pytest.fixture(autouse=True)
def _clean_keys(request):
    """Delete this module's keys (several slots per node: the conftest's drop_test_keys wants one)."""
    yield
    with SyncClient(startup_nodes=request.getfixturevalue("cluster").startup_nodes) as c:
        keys = list(c.scan_iter(match="{" + TAG_PREFIX + "pc*", count=1000))
        if keys:
            c.delete(*keys)


@pytest_asyncio.fixture(params=KINDS)
async def r(request: pytest.FixtureRequest, cluster: Any) -> Any:
    """The same scenario on both clients (decode_responses=True)."""
    client = await compared_client(request.param, cluster)
    yield client
    await client.aclose()


def spread(n: int) -> list[str]:
    """`n` fresh keys in `n` different slots (dropped after the test by the conftest's cleanup)."""
    run = uuid.uuid4().hex[:8]
    keys: list[str] = []
    slots: set[int] = set()
    i = 0
    while len(keys) < n:
        k = "{" + f"{TAG_PREFIX}pc{run}{i}" + "}:k"
        if key_slot(k.encode()) not in slots:
            slots.add(key_slot(k.encode()))
            keys.append(k)
        i += 1
    return keys


def is_reference(r: Any) -> bool:
    return isinstance(r, RedisCluster)


# ---- item: queueing returns the pipeline (chainable, not awaitable) ---------------------


async def test_queued_calls_chain_and_split_per_slot(r):
    """redis-py's own test_redis_cluster_pipeline, on keys of three slots."""
    a, b, k = spread(3)
    result = await (
        r.pipeline().set(a, 1).get(a).hset(k, "F", "V").hgetall(k)
        .mset_nonatomic({a: 2, b: 3}).get(a).get(b).delete(a, b, k).execute()
    )
    assert result == [True, "1", 1, {"F": "V"}, True, True, "2", "3", 1, 1, 1]


async def test_exists_and_touch_methods_queue_one_command_per_slot(r):
    a, b = spread(2)
    await r.set(a, 1)
    await r.set(b, 2)
    pipe = r.pipeline()
    assert pipe.exists(a, b) is pipe and pipe.touch(b, a) is pipe
    assert len(pipe) == 4
    assert await pipe.execute() == [1, 1, 1, 1]


async def test_concurrent_pipelines_on_one_client(r):
    async def one() -> list[Any]:
        a, b, k = spread(3)
        return await (r.pipeline().set(a, 1).get(a).mset_nonatomic({a: 2, b: 3}).get(b).delete(a, b, k).execute())

    results = await asyncio.gather(*(one() for _ in range(20)))
    assert results == [[True, "1", True, True, "3", 1, 1, 0]] * 20


async def test_awaiting_the_pipeline_or_unlink_of_one_key(r):
    (a,) = spread(1)
    await r.set(a, 1)
    pipe = r.pipeline()
    assert await pipe is pipe
    await pipe.unlink(a)  # awaited, as redis.asyncio's unlink must be
    assert await pipe.execute() == [1]


# ---- item: the methods RedisCluster blocks in pipelines ---------------------------------


async def test_every_blocked_method_is_refused_when_called(r):
    """Each method the installed redis.asyncio blocks in its pipelines, called without arguments,
    on a plain and on a transactional pipeline."""
    methods = [m for m in BLOCKED_METHODS
               if m != "mset_nonatomic" and callable(getattr(RedisAsyncioPipeline, m, None))]
    assert "mget" in methods and "mget_nonatomic" in methods
    for transaction in (False, True):
        pipe = r.pipeline(transaction=transaction)
        for method in methods:
            with pytest.raises(rx.RedisClusterException) as e:
                getattr(pipe, method)()
            assert str(e.value) == (
                f"ERROR: Calling pipelined function {method} is blocked when running redis in cluster mode...")
        assert len(pipe) == 0


async def test_mget_across_slots_is_refused_when_queued(r):
    a, b = spread(2)
    pipe = r.pipeline()
    with pytest.raises(rx.RedisClusterException) as e:
        pipe.mget(a, b)
    assert str(e.value) == "ERROR: Calling pipelined function mget is blocked when running redis in cluster mode..."
    with pytest.raises(rx.RedisClusterException):
        pipe.mget_nonatomic([a, b])
    assert len(pipe) == 0


# ---- item: a failed command's error names it, shortened ---------------------------------


async def test_failed_command_error_names_it_shortened(r):
    if is_reference(r) and REDIS_PY < (8, 2):
        pytest.skip("redis.asyncio 8.1 puts the error's args tuple in the message (fixed in 8.2)")
    (k,) = spread(1)
    pipe = r.pipeline()
    pipe.set(k, "string").hset(k, "aaaa" * 30, "v").get(k)
    with pytest.raises(rx.ResponseError) as e:
        await pipe.execute()
    text = textwrap.shorten(f"HSET {k} {'aaaa' * 30} v", width=100, placeholder="...", break_long_words=True)
    assert str(e.value) == f"Command # 2 ({text}) of pipeline caused error: {WRONGTYPE}"


async def test_failed_command_error_with_a_short_command(r):
    if is_reference(r) and REDIS_PY < (8, 2):
        pytest.skip("redis.asyncio 8.1 puts the error's args tuple in the message (fixed in 8.2)")
    (k,) = spread(1)
    pipe = r.pipeline()
    pipe.set(k, "string").lpush(k, "x")
    with pytest.raises(rx.ResponseError) as e:
        await pipe.execute()
    assert str(e.value) == f"Command # 2 (LPUSH {k} x) of pipeline caused error: {WRONGTYPE}"


# ---- item: TOUCH / EXISTS across slots (redis-py 8.2) -----------------------------------


async def test_touch_and_exists_across_slots_answer_one_summed_count(r):
    if is_reference(r) and REDIS_PY < (8, 2):
        pytest.skip("redis.asyncio 8.1 refuses TOUCH and EXISTS across slots in a pipeline")
    a, b, none = spread(3)
    await r.set(a, 1)
    await r.set(b, 2)
    pipe = r.pipeline()
    pipe.execute_command("TOUCH", a, b).execute_command("EXISTS", b, a, none)
    assert await pipe.execute() == [2, 2]
