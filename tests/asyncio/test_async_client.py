"""clusterpool.asyncio.ClusterClient on the session cluster: replies, routing, views, blocking
commands, cancellations, connection bounds and clean shutdown."""

from __future__ import annotations

import asyncio
import random

import pytest
from async_helpers import TAG_PREFIX, fd_count, other_tasks, sockets_to, until

from redis.exceptions import ResponseError

from clusterpool import ClusterClient as SyncClient
from clusterpool.asyncio import ClusterClient
from clusterpool.errors import ConfigurationError, CrossSlotError, WriteOnReaderError

pytestmark = pytest.mark.asyncio


@pytest.fixture(autouse=True)
def _clean_keys(cluster):
    yield
    drop_keys(cluster)


def drop_keys(cluster) -> None:
    """Delete this module's keys (`{cpasync...}`, many slots: drop_test_keys wants one per node)."""
    with SyncClient(startup_nodes=cluster.startup_nodes) as c:
        keys = list(c.scan_iter(match="{" + TAG_PREFIX + "*", count=1000))
        for i in range(0, len(keys), 500):
            c.delete(*keys[i : i + 500])


def _key(i: int | str) -> str:
    return f"{{{TAG_PREFIX}{i}}}:k"


def _client(cluster, **kw) -> ClusterClient:
    return ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True, **kw)


async def _common(c, p: str):
    """The same commands on either client (`c` awaits when async)."""
    async def run(x):
        return await x if asyncio.iscoroutine(x) else x

    out = [
        await run(c.set(f"{p}s", "v")), await run(c.get(f"{p}s")), await run(c.incr(f"{p}n")),
        await run(c.incrby(f"{p}n", 5)), await run(c.hset(f"{p}h", mapping={"a": 1, "b": 2})),
        await run(c.hgetall(f"{p}h")), await run(c.lpush(f"{p}l", 1, 2, 3)), await run(c.lrange(f"{p}l", 0, -1)),
        await run(c.zadd(f"{p}z", {"a": 1.5, "b": 2})), await run(c.zrange(f"{p}z", 0, -1, withscores=True)),
        await run(c.expire(f"{p}s", 100)), await run(c.ttl(f"{p}s")), await run(c.exists(f"{p}s", f"{p}n", f"{p}x")),
        await run(c.delete(f"{p}s", f"{p}n", f"{p}h", f"{p}l", f"{p}z")), await run(c.get(f"{p}s")),
        await run(c.set(f"{p}s", "v", nx=True, get=False)), await run(c.getdel(f"{p}s")),
    ]
    return out


async def test_replies_equal_the_sync_clients(cluster):
    sync = SyncClient(startup_nodes=cluster.startup_nodes, decode_responses=True)
    expected = await _common(sync, f"{{{TAG_PREFIX}s}}")
    sync.close()
    async with _client(cluster) as c:
        got = await _common(c, f"{{{TAG_PREFIX}a}}")
    assert got == expected


async def test_first_command_discovers_without_initialize(cluster):
    c = _client(cluster)
    assert c.topology().version == 0 and c.nodes() == ()
    assert await c.set(_key(1), "x") is True
    assert c.topology().version > 0
    await c.aclose()


async def test_keys_on_every_slot_are_routed_to_their_owner(cluster):
    async with _client(cluster) as c:
        keys = [_key(i) for i in range(600)]
        assert await asyncio.gather(*(c.set(k, k) for k in keys)) == [True] * 600
        assert await asyncio.gather(*(c.get(k) for k in keys)) == keys
        assert await c.mget_nonatomic(keys[:50]) == keys[:50]
        assert await c.delete(*keys) == 600


async def test_reader_reads_from_replicas(cluster):
    async with _client(cluster) as c:
        keys = [_key(i) for i in range(60)]
        await asyncio.gather(*(c.set(k, k) for k in keys))
        before = {p: cluster.client(p).info("commandstats").get("cmdstat_get", {}).get("calls", 0)
                  for p in cluster.replicas()}
        assert await asyncio.gather(*(c.reader.get(k) for k in keys)) == keys
        after = {p: cluster.client(p).info("commandstats").get("cmdstat_get", {}).get("calls", 0)
                 for p in cluster.replicas()}
        assert sum(after.values()) - sum(before.values()) >= len(keys)


async def test_reader_refuses_a_write_before_sending(cluster):
    async with _client(cluster) as c:
        with pytest.raises(WriteOnReaderError):
            await c.reader.set(_key(1), "x")
        with pytest.raises(WriteOnReaderError):
            await c.reader.delete(_key(1), _key(2))
        assert await c.get(_key(1)) is None


async def test_writer_reads_from_primaries(cluster):
    async with _client(cluster, read_from="replica") as c:
        assert await c.writer.set(_key(1), "x") is True
        assert await c.writer.get(_key(1)) == "x"
        assert c.writer.read_from == "primary"


async def test_keyless_commands_fan_out_as_the_sync_client(cluster):
    sync = SyncClient(startup_nodes=cluster.startup_nodes, decode_responses=True)
    async with _client(cluster) as c:
        await asyncio.gather(*(c.set(_key(i), i) for i in range(20)))
        assert await c.ping() is True
        assert await c.dbsize() == sync.dbsize()
        assert sorted(await c.keys(f"{{{TAG_PREFIX}*")) == sorted(sync.keys(f"{{{TAG_PREFIX}*"))
        assert await c.cluster_keyslot(_key(1)) == c.slot(_key(1))
    sync.close()


async def test_bad_input_fails_before_anything_is_sent(cluster):
    async with _client(cluster) as c:
        with pytest.raises(CrossSlotError):
            await c.rename(_key(1), _key(2))
        with pytest.raises(ConfigurationError):
            await c.execute_command("MULTI")
    with pytest.raises(ConfigurationError):
        ClusterClient(startup_nodes=cluster.startup_nodes, no_such_option=1)


async def test_a_blocked_blpop_leases_a_connection_and_does_not_delay_shared_traffic(cluster):
    async with _client(cluster) as c:
        q = _key("q")
        blocked = asyncio.ensure_future(c.blpop([q], 0))
        owner = c.node_for(q).name
        await until(lambda: c.connections(owner) is not None and c.connections(owner).dedicated.stats().leased == 1,
                    what="BLPOP to lease a dedicated connection")
        keys = [_key(f"o{i}") for i in range(200)]
        assert await asyncio.gather(*(c.set(k, 1) for k in keys)) == [True] * 200
        assert not blocked.done()
        await c.rpush(q, "x")
        assert await blocked == (q, "x")  # redis-py's shape for BLPOP
        assert c.connections(owner).dedicated.stats().leased == 0  # type: ignore[union-attr]


async def test_random_cancellations_never_mix_up_replies(cluster):
    rng = random.Random(16)
    async with _client(cluster) as c:
        n = 3000
        await asyncio.gather(*(c.set(_key(i), f"v{i}") for i in range(n)))
        tasks = [asyncio.ensure_future(c.get(_key(i))) for i in range(n)]
        for _ in range(20):
            for t in rng.sample(tasks, 60):
                t.cancel()
            await asyncio.sleep(0)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        assert 0 < cancelled < n
        for i, r in enumerate(results):
            if not isinstance(r, asyncio.CancelledError):
                assert r == f"v{i}"
        again = await asyncio.gather(*(c.get(_key(i)) for i in range(0, n, 7)))
        assert again == [f"v{i}" for i in range(0, n, 7)]
        # the connections stayed up: every shared connection ever opened is still in use,
        # and cancelled callers' replies were dropped (or their commands skipped) on them
        abandoned = 0
        for name in (n.name for n in c.nodes()):
            conns = c.connections(name)
            if conns is not None:
                stats = conns.stats()
                assert len(stats.shared) == stats.opened_shared
                abandoned += sum(m.dropped + m.skipped for m in stats.shared)
        assert 0 < abandoned <= cancelled  # a task cancelled before it ran queued nothing


async def test_connections_per_node_stay_bounded_under_5000_tasks(cluster):
    # sockets_to() counts the whole process's sockets: those of clients other tests left open count
    # as the baseline, not as this client's
    before = {p: sockets_to(p) for p in cluster.ports}
    async with _client(cluster) as c:
        peak: dict[int, int] = {}
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                for p in cluster.ports:
                    peak[p] = max(peak.get(p, 0), sockets_to(p) - before[p])
                await asyncio.sleep(0)

        watcher = asyncio.ensure_future(watch())
        results = await asyncio.gather(*(c.set(_key(i), i) if i % 2 else c.get(_key(i)) for i in range(5000)))
        done.set()
        await watcher
        assert results[1::2] == [True] * 2500
        max_shared = 2
        assert max(peak.values()) <= max_shared


async def test_aclose_leaves_no_task_and_no_socket(cluster):
    base_fds = fd_count()
    base_tasks = other_tasks()
    c = _client(cluster)
    await asyncio.gather(*(c.set(_key(i), i) for i in range(300)), c.reader.get(_key(1)), c.blpop([_key("b")], 0.05))
    await c.aclose()
    assert other_tasks() - base_tasks == set()
    await until(lambda: fd_count() <= base_fds, what="every socket closed")
    await c.aclose()  # idempotent


async def test_events_are_published_through_on(cluster):
    seen: list[str] = []
    c = _client(cluster)
    c.on("*", lambda e: seen.append(type(e).__name__))
    await c.initialize()
    await until(lambda: "TopologyRefreshed" in seen, what="the first map's event")
    await c.aclose()


async def test_a_pipeline_gives_the_sync_pipelines_replies(cluster):
    def queue(pipe, p: str):
        pipe.set(f"{p}1", "a").set(f"{p}2", "b").get(f"{p}1").incr(f"{p}n").hset(f"{p}h", "f", 1)
        pipe.hgetall(f"{p}h").lpush(f"{p}l", 1, 2).lrange(f"{p}l", 0, -1).delete(f"{p}1", f"{p}2")
        return pipe

    with SyncClient(startup_nodes=cluster.startup_nodes, decode_responses=True) as sync:
        expected = queue(sync.pipeline(), f"{{{TAG_PREFIX}ps}}").execute()
    async with _client(cluster) as c, c.pipeline() as pipe:
        got = await queue(pipe, f"{{{TAG_PREFIX}pa}}").execute()
    assert got == expected


async def test_a_pipeline_to_one_node_leaves_in_one_socket_write(cluster):
    async with _client(cluster) as c:
        tag = f"{{{TAG_PREFIX}w}}"
        await c.set(f"{tag}:0", 0)
        node = c.node_for(tag).name
        before = sum(m.writes for m in c.connections(node).stats().shared)  # type: ignore[union-attr]
        pipe = c.pipeline()
        for i in range(100):
            pipe.set(f"{tag}:{i}", i)
        assert await pipe.execute() == [True] * 100
        after = sum(m.writes for m in c.connections(node).stats().shared)  # type: ignore[union-attr]
        assert after - before == 1


async def test_a_pipeline_error_is_raised_or_returned_in_place(cluster):
    async with _client(cluster) as c:
        k = _key("e")
        await c.set(k, "text")
        pipe = c.pipeline().incr(k).get(k)
        with pytest.raises(ResponseError, match="Command # 1"):
            await pipe.execute()
        replies = await c.pipeline().incr(k).get(k).execute(raise_on_error=False)
        assert isinstance(replies[0], ResponseError) and replies[1] == "text"


async def test_lock_is_redis_pys_asyncio_lock_on_the_cluster(cluster):
    async with _client(cluster) as c:
        lock = c.lock(_key("lock"), timeout=30)
        assert await lock.acquire(blocking=False) is True
        assert await c.lock(_key("lock")).acquire(blocking=False) is False
        assert await lock.locked() is True
        await lock.release()
        assert await c.exists(_key("lock")) == 0


async def test_a_cancelled_blocking_command_discards_its_connection(cluster):
    async with _client(cluster) as c:
        q = _key("cq")
        blocked = asyncio.ensure_future(c.blpop([q], 0))
        owner = c.node_for(q).name
        await until(lambda: c.connections(owner) is not None and c.connections(owner).dedicated.stats().leased == 1,
                    what="BLPOP to lease a dedicated connection")
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        await until(lambda: c.connections(owner).dedicated.stats().discarded == 1,  # type: ignore[union-attr]
                    what="the cancelled BLPOP's connection to be discarded")
        await c.rpush(q, "x")  # nobody pops it: the cancelled BLPOP is gone from the server too
        assert await c.blpop([q], 1) == (q, "x")


async def test_from_url_and_options_reach_the_client(cluster):
    host, port = cluster.startup_nodes[0]
    c = ClusterClient.from_url(f"redis://{host}:{port}", decode_responses=True, retry_timeout=5.0)
    assert c.config.retry_timeout == 5.0
    assert await c.set(_key("url"), "u") is True
    assert await c.get(_key("url")) == "u"
    await c.aclose()
    with pytest.raises(ConfigurationError):
        ClusterClient.from_url("unix:///tmp/redis.sock")


async def test_blocking_commands_are_told_apart():
    from clusterpool.asyncio.client import is_blocking
    from clusterpool.commands import CommandTable

    table = CommandTable.bundled_with(None)

    def blocking(*args):
        info, argv = table.resolve(args)
        return is_blocking(info, argv)

    assert blocking("BLPOP", "k", 0) and blocking("BZPOPMIN", "z", 1) and blocking("BLMOVE", "a", "b", "LEFT", "RIGHT", 0)
    assert blocking("WAIT", 1, 0) and blocking("XREAD", "BLOCK", 0, "STREAMS", "s", "$")
    assert not blocking("XREAD", "COUNT", 1, "STREAMS", "s", "0") and not blocking("GET", "k")


async def test_dump_gives_bytes_with_decode_responses_and_restore_takes_them(cluster):
    async with _client(cluster) as c:
        await c.set(_key("d"), "value")
        blob = await c.dump(_key("d"))
        assert isinstance(blob, bytes)
        assert await c.restore(_key("d2"), 0, blob) == "OK"
        assert await c.get(_key("d2")) == "value"
        name = c.node_for(_key("d")).name
        stats = c.connections(name).stats()  # type: ignore[union-attr]
        assert len(stats.shared) == stats.opened_shared  # no shared connection broke on the binary reply
