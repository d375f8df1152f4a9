"""Transactions (MULTI/EXEC, WATCH) on clusterpool.asyncio.ClusterClient, on the session cluster.

The drop-in tests run twice through one parametrized fixture, on redis.asyncio's RedisCluster
and on ours, with the expected replies, exception classes and messages as literals. The
rest check our own promises: a slot migrated under a transaction, and cancellations that
leave no leased, dirty or WATCHing connection behind.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import pytest_asyncio
from async_helpers import TAG_PREFIX
from redis import exceptions as rx
from redis.asyncio.cluster import RedisCluster

from clusterpool import ClusterClient as SyncClient
from clusterpool.asyncio import ClusterClient
from clusterpool.slots import key_slot

pytestmark = pytest.mark.asyncio

KINDS = ("redis.asyncio", "clusterpool")


@pytest_asyncio.fixture(params=KINDS)
async def r(request: pytest.FixtureRequest, cluster: Any) -> Any:
    """The same scenario on both clients (decode_responses=True)."""
    host, port = cluster.startup_nodes[0]
    if request.param == "redis.asyncio":
        client: Any = RedisCluster(host=host, port=port, decode_responses=True)
    else:
        client = ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True)
    await client.initialize()
    yield client
    await client.aclose()


@pytest.fixture
def t() -> str:
    """A hash tag unique to the test (dropped after it by the conftest's cleanup)."""
    return "{" + f"{TAG_PREFIX}tx{uuid.uuid4().hex[:8]}" + "}"


def two_slots(t: str) -> tuple[str, str]:
    a = f"{t}:a"
    b = next(f"{t[1:-1]}:b{i}" for i in range(100) if key_slot(f"{t[1:-1]}:b{i}".encode()) != key_slot(a.encode()))
    return a, b


async def _sync_other(cluster: Any, key: str, value: str) -> None:
    """Another client changes `key` (a sync one, off the loop)."""
    def change() -> None:
        with SyncClient(startup_nodes=cluster.startup_nodes) as other:
            other.set(key, value)
    await asyncio.to_thread(change)


async def _drop(cluster: Any, *keys: str) -> None:
    def drop() -> None:
        with SyncClient(startup_nodes=cluster.startup_nodes) as c:
            for k in keys:
                c.delete(k)
    await asyncio.to_thread(drop)


# ---- drop-in: the same replies and errors as redis.asyncio's RedisCluster ----------------


async def test_transaction_replies_are_parsed_as_redis_asyncio_parses_them(r, t, cluster):
    pipe = r.pipeline(transaction=True)
    pipe.set(f"{t}:a", "v").get(f"{t}:a").incr(f"{t}:n").expire(f"{t}:n", 100)
    pipe.hset(f"{t}:h", "f", "v").hgetall(f"{t}:h").sadd(f"{t}:s", "x").exists(f"{t}:s")
    # (no SMEMBERS: redis.asyncio's callback for it rejects the keys= option its transaction passes)
    pipe.zadd(f"{t}:z", {"m": 1}).zscore(f"{t}:z", "m").ttl(f"{t}:n").getdel(f"{t}:a")
    pipe.zrange(f"{t}:z", 0, -1, withscores=True)
    assert len(pipe) == 13
    assert await pipe.execute() == [True, "v", 1, True, 1, {"f": "v"}, 1, 1, 1, 1.0, 100, "v", [("m", 1.0)]]
    assert len(pipe) == 0
    await _drop(cluster, f"{t}:a", f"{t}:n", f"{t}:h", f"{t}:s", f"{t}:z")


async def test_keys_of_two_slots_raise_cross_slot_transaction_error_before_sending(r, t):
    a, b = two_slots(t)
    pipe = r.pipeline(transaction=True)
    pipe.set(a, 1).set(b, 2)
    with pytest.raises(rx.CrossSlotTransactionError) as e:
        await pipe.execute()
    assert str(e.value) == "All keys involved in a cluster transaction must map to the same slot"
    assert await r.exists(a) == 0 and await r.exists(b) == 0


async def test_delete_of_two_slots_raises_cross_slot_transaction_error(r, t):
    a, b = two_slots(t)
    pipe = r.pipeline(transaction=True)
    pipe.set(a, 1).delete(a, b)
    with pytest.raises(rx.CrossSlotTransactionError):
        await pipe.execute()
    assert await r.exists(a) == 0


async def test_watch_of_another_slot_raises_cross_slot_transaction_error(r, t):
    a, b = two_slots(t)
    async with r.pipeline(transaction=True) as pipe:
        assert await pipe.watch(a) is None
        with pytest.raises(rx.CrossSlotTransactionError) as e:
            await pipe.watch(b)
        assert str(e.value) == "Cannot watch or send commands on different slots"
        with pytest.raises(rx.CrossSlotTransactionError) as e:
            await pipe.get(b)
        assert str(e.value) == "Cannot watch or send commands on different slots"


async def test_watch_then_queued_command_of_another_slot_raises_at_execute(r, t):
    a, b = two_slots(t)
    pipe = r.pipeline(transaction=True)
    await pipe.watch(a)
    pipe.multi()
    pipe.set(b, 1)
    with pytest.raises(rx.CrossSlotTransactionError) as e:
        await pipe.execute()
    assert str(e.value) == "All keys involved in a cluster transaction must map to the same slot"
    assert await r.exists(b) == 0


async def test_error_at_exec_names_the_command(r, t, cluster):
    k = f"{t}:k"
    pipe = r.pipeline(transaction=True)
    pipe.set(k, "string").lpush(k, "x").get(k)
    with pytest.raises(rx.ResponseError) as e:
        await pipe.execute()
    assert str(e.value) == (f"Command # 2 (LPUSH {k} x) of pipeline caused error: "
                            "WRONGTYPE Operation against a key holding the wrong kind of value")
    assert await r.get(k) == "string"
    await _drop(cluster, k)


async def test_error_at_exec_is_returned_in_place(r, t, cluster):
    k = f"{t}:k"
    pipe = r.pipeline(transaction=True)
    pipe.set(k, "string").lpush(k, "x").get(k)
    res = await pipe.execute(raise_on_error=False)
    assert res[0] is True and res[2] == "string"
    assert type(res[1]) is rx.ResponseError
    await _drop(cluster, k)


async def test_command_refused_while_queuing_aborts_the_transaction(r, t):
    k = f"{t}:k"
    pipe = r.pipeline(transaction=True)
    pipe.set(k, 2).execute_command("INCRBY", k)
    with pytest.raises(rx.ResponseError) as e:
        await pipe.execute()
    assert str(e.value) == (f"Command # 2 (INCRBY {k}) of pipeline caused error: "
                            "wrong number of arguments for 'incrby' command")
    assert await r.get(k) is None


async def test_watch_and_a_change_by_another_client_raise_watch_error(r, t, cluster):
    k = f"{t}:w"
    await r.set(k, "0")
    async with r.pipeline(transaction=True) as pipe:
        await pipe.watch(k)
        assert await pipe.get(k) == "0"  # immediate, parsed
        await _sync_other(cluster, k, "changed")
        pipe.multi()
        pipe.set(k, "mine")
        with pytest.raises(rx.WatchError) as e:
            await pipe.execute()
        assert str(e.value) == "Watched variable changed."
    assert await r.get(k) == "changed"
    await _drop(cluster, k)


async def test_watch_without_a_change_executes(r, t, cluster):
    k = f"{t}:w"
    await r.set(k, "0")
    async with r.pipeline(transaction=True) as pipe:
        await pipe.watch(k)
        cur = int(await pipe.get(k))
        pipe.multi()
        pipe.set(k, cur + 1).get(k)
        assert await pipe.execute() == [True, "1"]
    assert await r.get(k) == "1"
    await _drop(cluster, k)


async def test_unwatch_queues_commands_again(r, t, cluster):
    k = f"{t}:k"
    pipe = r.pipeline(transaction=True)
    await pipe.watch(k)
    assert await pipe.unwatch() is None
    pipe.set(k, 2)
    assert len(pipe) == 1
    assert await pipe.execute() == [True]
    assert await r.get(k) == "2"
    await _drop(cluster, k)


async def test_multi_and_watch_order_is_enforced(r, t):
    k = f"{t}:k"
    pipe = r.pipeline(transaction=True)
    pipe.multi()
    with pytest.raises(rx.RedisError) as e:
        pipe.multi()
    assert str(e.value) == "Cannot issue nested calls to MULTI"
    with pytest.raises(rx.RedisError) as e:
        await pipe.watch(k)
    assert str(e.value) == "Cannot issue a WATCH after a MULTI"
    await pipe.reset()
    pipe.set(k, 1)
    with pytest.raises(rx.RedisError) as e:
        pipe.multi()
    assert str(e.value) == "Commands without an initial WATCH have already been issued"
    await pipe.reset()


async def test_discard_drops_the_queue(r, t):
    k = f"{t}:k"
    pipe = r.pipeline(transaction=True)
    pipe.set(k, 1)
    await pipe.discard()
    assert len(pipe) == 0 and await pipe.execute() == []
    assert await r.get(k) is None


async def test_transaction_helper_retries_after_watch_error(r, t, cluster):
    k = f"{t}:counter"
    await r.set(k, 10)
    calls = []

    async def incr(pipe: Any) -> int:
        cur = int(await pipe.get(k))
        if not calls:
            await _sync_other(cluster, k, "20")  # the first round loses
        calls.append(cur)
        pipe.multi()
        pipe.set(k, cur + 1)
        return cur

    assert await r.transaction(incr, k) == [True]
    assert calls == [10, 20]
    assert await r.transaction(incr, k, value_from_callable=True) == 21
    assert await r.get(k) == "22"
    await _drop(cluster, k)


async def test_empty_transaction_returns_nothing(r):
    assert await r.pipeline(transaction=True).execute() == []


async def test_async_with_resets_the_transaction(r, t):
    k = f"{t}:k"
    async with r.pipeline(transaction=True) as pipe:
        pipe.set(k, 1)
    assert len(pipe) == 0
    assert await pipe.execute() == []
    assert await r.get(k) is None
