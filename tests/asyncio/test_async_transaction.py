"""Transactions (MULTI/EXEC, WATCH) on clusterpool.asyncio.ClusterClient, on the session cluster.

The drop-in tests run twice through one parametrized fixture, on redis.asyncio's RedisCluster
and on ours, with the expected replies, exception classes and messages as literals. The
rest check our own promises: a slot migrated under a transaction, and cancellations that
leave no leased, dirty or WATCHing connection behind.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
import pytest_asyncio
from async_helpers import KINDS, TAG_PREFIX, compared_client, tag_on, until
from redis import exceptions as rx

from clusterpool import ClusterClient as SyncClient
from clusterpool.asyncio import ClusterClient
from clusterpool.errors import CrossSlotTransactionError, UnknownOutcomeError, WriteOnReaderError
from clusterpool.slots import key_slot

pytestmark = pytest.mark.asyncio



@pytest_asyncio.fixture(params=KINDS)
async def r(request: pytest.FixtureRequest, cluster: Any) -> Any:
    """The same scenario on both clients (decode_responses=True)."""
    client = await compared_client(request.param, cluster)
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


# ---- our own promises --------------------------------------------------------------------


def _client(cluster: Any, **kw: Any) -> ClusterClient:
    return ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True, **kw)


def _dedicated(c: ClusterClient) -> list[Any]:
    """The dedicated pool stats of every node the client has connections to."""
    topo = c.topology()
    assert topo is not None
    conns = [c.connections(n.name) for n in topo.nodes]
    return [x.stats().dedicated for x in conns if x is not None]


def _same_transaction(pipe: Any, t: str) -> Any:
    pipe.set(f"{t}:a", "v").get(f"{t}:a").incr(f"{t}:n").incrby(f"{t}:n", 4).hset(f"{t}:h", "f", "v")
    pipe.hget(f"{t}:h", "f").lpush(f"{t}:l", 1, 2).lrange(f"{t}:l", 0, -1).ttl(f"{t}:n").getdel(f"{t}:a")
    return pipe


async def test_replies_equal_the_sync_clients_but_for_redis_asyncios_parsing(cluster):
    sync_t, async_t = "{" + f"{TAG_PREFIX}txs" + "}", "{" + f"{TAG_PREFIX}txa" + "}"

    def run_sync() -> list[Any]:
        with SyncClient(startup_nodes=cluster.startup_nodes, decode_responses=True) as s:
            return _same_transaction(s.pipeline(transaction=True), sync_t).execute()

    expected = await asyncio.to_thread(run_sync)
    async with _client(cluster) as c:
        got = await _same_transaction(c.pipeline(transaction=True), async_t).execute()
    # SET: redis-py's sync RedisCluster leaves EXEC's replies unparsed ("OK"), redis.asyncio's parses them (True)
    assert expected[0] == "OK" and got[0] is True
    assert got[1:] == expected[1:] == ["v", 1, 5, 1, "v", 2, ["2", "1"], -1, "v"]
    await _drop(cluster, f"{sync_t}:n", f"{sync_t}:h", f"{sync_t}:l", f"{async_t}:n", f"{async_t}:h", f"{async_t}:l")


async def test_cross_slot_transaction_is_refused_before_any_connection_is_leased(cluster, t):
    a, b = two_slots(t)
    async with _client(cluster) as c:
        pipe = c.pipeline(transaction=True)
        pipe.set(a, 1).set(b, 2)
        with pytest.raises(CrossSlotTransactionError):
            await pipe.execute()
        assert all(d.opened == 0 for d in _dedicated(c))


async def test_cross_slot_watch_is_refused_before_it_is_sent(cluster, t):
    a, b = two_slots(t)
    async with _client(cluster) as c:
        async with c.pipeline(transaction=True) as pipe:
            await pipe.watch(a)
            with pytest.raises(CrossSlotTransactionError):
                await pipe.watch(b)
            assert sum(d.opened for d in _dedicated(c)) == 1  # only the first WATCH's connection
            assert sum(d.leased for d in _dedicated(c)) == 1
        assert sum(d.leased for d in _dedicated(c)) == 0


async def test_async_with_gives_the_watch_connection_back_unwatched(cluster, t):
    k = f"{t}:w"
    async with _client(cluster, max_connections=1) as c:
        async with c.pipeline(transaction=True) as pipe:
            await pipe.watch(k)
            assert sum(d.leased for d in _dedicated(c)) == 1
        assert sum(d.leased for d in _dedicated(c)) == 0
        assert sum(d.idle for d in _dedicated(c)) == 1  # reused: UNWATCH was answered
        await _sync_other(cluster, k, "changed")
        # the one dedicated connection again, now without WATCH: a plain transaction runs
        assert await c.pipeline(transaction=True).set(k, "mine").execute() == [True]
        assert await c.get(k) == "mine"
    await _drop(cluster, k)


async def test_a_reader_view_refuses_a_writing_transaction_before_sending(cluster, t):
    async with _client(cluster) as c:
        pipe = c.reader.pipeline(transaction=True)
        pipe.get(f"{t}:k").set(f"{t}:k", 1)
        with pytest.raises(WriteOnReaderError):
            await pipe.execute()
        assert all(d.opened == 0 for d in _dedicated(c))


# ---- the cluster changing under a transaction (a cluster of their own) ---------------------


@pytest.mark.chaos
async def test_a_transaction_on_a_moved_slot_is_resent_to_the_new_owner(fresh_cluster):
    cluster = fresh_cluster
    src, dst = cluster.primaries()[:2]
    tag = tag_on(cluster, src)
    k = f"{tag}:t"
    async with _client(cluster, health_interval=3600) as c:  # no CLUSTER INFO watch: MOVED tells it
        assert await c.set(k, 1) is True
        await asyncio.to_thread(cluster.move_slot, key_slot(tag[1:-1].encode()), dst)  # our map still says src
        assert await c.pipeline(transaction=True).incr(k).get(k).execute() == [2, "2"]
        assert c.node_for(k).port == dst  # MOVED repointed the slot
        assert sum(d.leased for d in _dedicated(c)) == 0


@pytest.mark.chaos
async def test_a_transaction_follows_ask_to_the_importing_node(fresh_cluster):
    cluster = fresh_cluster
    src, dst = cluster.primaries()[:2]
    tag = tag_on(cluster, src)
    slot = key_slot(tag[1:-1].encode())
    keys = [f"{tag}:{i}" for i in range(4)]
    async with _client(cluster) as c:
        await c.mset_nonatomic({k: "1" for k in keys})
        await asyncio.to_thread(cluster.begin_migration, slot, dst)
        assert await asyncio.to_thread(cluster.migrate_keys, slot, dst) == len(keys)  # src now answers ASK
        assert await c.pipeline(transaction=True).incr(keys[0]).incr(keys[1]).execute() == [2, 2]
        await asyncio.to_thread(cluster.finish_migration, slot, dst)
        assert await c.mget_nonatomic(keys) == ["2", "2", "1", "1"]


@pytest.mark.chaos
async def test_a_watched_slot_that_moves_raises_watch_error_and_transaction_starts_over(fresh_cluster):
    cluster = fresh_cluster
    src, dst = cluster.primaries()[:2]
    tag = tag_on(cluster, src)
    k = f"{tag}:w"
    rounds: list[str] = []
    async with _client(cluster) as c:
        await c.set(k, "0")

        async def bump(pipe: Any) -> None:
            cur = await pipe.get(k)
            if not rounds:  # the slot moves between WATCH and EXEC of the first round
                await asyncio.to_thread(cluster.move_slot, key_slot(tag[1:-1].encode()), dst)
            rounds.append(cur)
            pipe.multi()
            pipe.set(k, int(cur) + 1)

        assert await c.transaction(bump, k) == [True]
        assert rounds == ["0", "0"]
        assert await c.get(k) == "1"
        assert sum(d.leased for d in _dedicated(c)) == 0


@pytest.mark.chaos
async def test_an_exec_whose_reply_is_lost_is_an_unknown_outcome(fresh_cluster):
    cluster = fresh_cluster
    port = cluster.primaries()[0]
    tag = tag_on(cluster, port)
    async with _client(cluster, socket_timeout=0.5) as c:
        assert await c.pipeline(transaction=True).set(f"{tag}:u", 1).execute() == [True]  # a dedicated one is open
        await asyncio.to_thread(cluster.pause, port)
        try:
            with pytest.raises(UnknownOutcomeError):
                await c.pipeline(transaction=True).set(f"{tag}:u", 2).execute()
        finally:
            await asyncio.to_thread(cluster.resume, port)
        assert sum(d.leased for d in _dedicated(c)) == 0
        assert sum(d.discarded for d in _dedicated(c)) == 1


# ---- cancellation -----------------------------------------------------------------------


async def _watched_incr(c: ClusterClient, k: str, last: str, i: int) -> list[Any]:
    async with c.pipeline(transaction=True) as pipe:
        await pipe.watch(k)
        cur = int(await pipe.get(k))
        pipe.multi()
        pipe.set(k, cur + 1).set(last, i)
        return await pipe.execute()


async def _plain_incr(c: ClusterClient, k: str, last: str, i: int) -> list[Any]:
    return await c.pipeline(transaction=True).incr(k).set(last, i).execute()


async def test_200_random_cancellations_leave_no_leased_dirty_or_watching_connection(cluster, t):
    k, last = f"{t}:c", f"{t}:last"
    rng = random.Random(16)
    outcomes = {"cancelled": 0, "done": 0, "watch_error": 0}
    async with _client(cluster, max_connections=3) as c:
        await c.set(k, 0)
        slot = c.slot(k)
        for batch in range(40):  # 5 at once on a pool of 3: some wait for a lease, some hold one
            tasks = [asyncio.ensure_future((_watched_incr if rng.random() < 0.5 else _plain_incr)(c, k, last, i))
                     for i in range(batch * 5, batch * 5 + 5)]
            for task in tasks:
                for _ in range(rng.randrange(12)):  # cancelled anywhere: waiting, WATCHing, before or after EXEC
                    await asyncio.sleep(0)
                task.cancel()
            for task in tasks:
                try:
                    await task
                    outcomes["done"] += 1
                except asyncio.CancelledError:
                    outcomes["cancelled"] += 1
                except rx.WatchError:
                    outcomes["watch_error"] += 1
        assert sum(outcomes.values()) == 200 and outcomes["cancelled"] > 0

        name = await c.primary_for(slot)
        pool = c.connections(name)
        assert pool is not None

        def settled() -> bool:
            d = pool.stats().dedicated
            return d.leased == 0 and d.opening == 0 and d.opened - d.discarded == d.idle

        await until(settled, what="every dedicated connection idle or discarded")
        d = pool.stats().dedicated
        assert d.discarded > 0 and d.idle <= 3

        # no idle connection still WATCHes k: after another client changes it, plain transactions
        # on every idle connection at once all run (a leaked WATCH would abort one)
        await _sync_other(cluster, k, "100")
        replies = await asyncio.gather(*(_plain_incr(c, k, last, -1) for _ in range(3)))
        assert sorted(replies) == [[101, True], [102, True], [103, True]]
        # and WATCH on the same client still works both ways
        assert await _watched_incr(c, k, last, -2) == [True, True]
        async with c.pipeline(transaction=True) as pipe:
            await pipe.watch(k)
            await _sync_other(cluster, k, "0")
            pipe.multi()
            pipe.set(k, "mine")
            with pytest.raises(rx.WatchError):
                await pipe.execute()
        assert await until(settled, what="the pool settled again") is None
    await _drop(cluster, k, last)


def _blocked_clients(cluster: Any, port: int) -> int:
    r = cluster.client(port)
    try:
        return int(r.info("clients")["blocked_clients"])
    finally:
        r.close()


def _get(cluster: Any, port: int, key: str) -> Any:
    r = cluster.client(port)
    try:
        return r.get(key)
    finally:
        r.close()


def _unread_at(port: int) -> int:
    """Bytes the server's sockets on `port` have received but the server has not read yet."""
    n = 0
    with open("/proc/self/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if int(parts[1].split(":")[1], 16) == port:
                n += int(parts[4].split(":")[1], 16)
    return n


async def test_a_cancelled_immediate_command_loses_the_watch_and_the_exec_raises_watch_error(cluster, t):
    k = f"{t}:w"
    port = cluster.slot_owner(key_slot(t[1:-1].encode()))
    async with _client(cluster) as c:
        async with c.pipeline(transaction=True) as pipe:
            await pipe.watch(k)
            blocked = asyncio.ensure_future(pipe.blpop([f"{t}:list"], 0))  # runs at once, blocks on the server
            await until(lambda: _blocked_clients(cluster, port) == 1, what="BLPOP blocked on the server")
            blocked.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocked
            pipe.multi()
            pipe.set(k, "mine")
            with pytest.raises(rx.WatchError):  # the WATCH went with the discarded connection
                await pipe.execute()
        assert await c.get(k) is None
        assert sum(d.leased for d in _dedicated(c)) == 0 and sum(d.discarded for d in _dedicated(c)) == 1
        await until(lambda: _blocked_clients(cluster, port) == 0, what="the discarded connection closed")


@pytest.mark.chaos
async def test_a_transaction_cancelled_after_exec_was_written_discards_its_connection(fresh_cluster):
    cluster = fresh_cluster
    port = cluster.primaries()[0]
    tag = tag_on(cluster, port)
    k = f"{tag}:x"
    async with _client(cluster) as c:
        assert await c.pipeline(transaction=True).set(k, "before").execute() == [True]  # a dedicated one is open
        await asyncio.to_thread(cluster.pause, port)
        try:
            before = _unread_at(port)
            task = asyncio.ensure_future(c.pipeline(transaction=True).set(k, "after").execute())
            await until(lambda: sum(d.leased for d in _dedicated(c)) == 1 and _unread_at(port) > before,
                        what="MULTI..EXEC written to the paused node")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await asyncio.to_thread(cluster.resume, port)
        # cancelled does not mean not executed: the node runs what it was sent
        await until(lambda: _get(cluster, port, k) == "after", what="the cancelled EXEC to run")
        assert sum(d.leased for d in _dedicated(c)) == 0 and sum(d.discarded for d in _dedicated(c)) == 1
        assert await c.pipeline(transaction=True).get(k).execute() == ["after"]  # on a new connection


async def test_raw_unwatch_gives_the_watch_connection_back_and_queues_again(cluster, t):
    k = f"{t}:k"
    async with _client(cluster) as c:
        pipe = c.pipeline(transaction=True)
        await pipe.watch(k)
        assert await pipe.execute_command("UNWATCH") is True
        assert sum(d.leased for d in _dedicated(c)) == 0
        assert pipe.set(k, 1) is pipe  # queued, no longer run at once
        assert await pipe.execute() == [True]
    await _drop(cluster, k)


async def test_multi_key_commands_of_one_slot_run_in_a_transaction(cluster, t):
    async with _client(cluster) as c:
        pipe = c.pipeline(transaction=True)
        pipe.mset({f"{t}:a": "1", f"{t}:b": "2"}).mget(f"{t}:a", f"{t}:b").delete(f"{t}:a", f"{t}:b")
        assert await pipe.execute() == [True, ["1", "2"], 2]
