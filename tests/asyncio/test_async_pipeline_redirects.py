"""clusterpool.asyncio pipelines (and the *_nonatomic helpers built on them) when replies are
not plain: MOVED and ASK for written commands, cancellation, one write per node."""

from __future__ import annotations

import asyncio

import pytest
from async_helpers import tag_on

from clusterpool.asyncio import ClusterClient
from clusterpool.slots import key_slot

pytestmark = pytest.mark.asyncio


def _client(cluster) -> ClusterClient:
    return ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True)


def _writes(c: ClusterClient, node: str) -> int:
    conns = c.connections(node)
    return 0 if conns is None else sum(m.writes for m in conns.stats().shared)


async def test_pipelined_commands_to_a_moved_slot_follow_moved(fresh_cluster):
    cluster = fresh_cluster
    src, dst = cluster.primaries()[:2]
    tag = tag_on(cluster, src)
    async with _client(cluster) as c:
        assert await c.set(f"{tag}:0", "x") is True
        await asyncio.to_thread(cluster.move_slot, key_slot(tag[1:-1].encode()), dst)
        pipe = c.pipeline()
        for i in range(50):
            pipe.set(f"{tag}:{i}", i).get(f"{tag}:{i}")
        assert await pipe.execute() == [r for i in range(50) for r in (True, str(i))]
        assert c.node_for(tag).port == dst


async def test_pipelined_commands_to_a_migrating_slot_follow_ask(fresh_cluster):
    cluster = fresh_cluster
    src, dst = cluster.primaries()[:2]
    tag = tag_on(cluster, src)
    async with _client(cluster) as c:
        await c.initialize()
        await asyncio.to_thread(cluster.begin_migration, key_slot(tag[1:-1].encode()), dst)
        pipe = c.pipeline()
        for i in range(50):  # new keys: the source answers ASK, the target takes them
            pipe.set(f"{tag}:new:{i}", i)
        assert await pipe.execute() == [True] * 50
    assert cluster.client(dst).info("commandstats")["cmdstat_asking"]["calls"] >= 50


async def test_a_cancelled_pipeline_abandons_its_replies_and_the_next_one_gets_its_own(cluster):
    async with _client(cluster) as c:
        await c.initialize()
        tag = tag_on(cluster, cluster.primaries()[0])
        for round_ in range(20):
            pipe = c.pipeline()
            for i in range(200):
                pipe.set(f"{tag}:c:{i}", f"{round_}:{i}")
            task = asyncio.ensure_future(pipe.execute())
            for _ in range(round_ % 4):
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        check = c.pipeline()  # its own keys: the abandoned SETs may still be running elsewhere
        for i in range(200):
            check.set(f"{tag}:d:{i}", f"final:{i}").get(f"{tag}:d:{i}")
        assert await check.execute() == [r for i in range(200) for r in (True, f"final:{i}")]


async def test_mget_nonatomic_sends_one_write_per_node(cluster):
    async with _client(cluster) as c:
        keys = [f"mg:{i}" for i in range(100)]
        await c.mset_nonatomic({k: k for k in keys})
        nodes = [n.name for n in c.nodes("primary")]
        before = {n: _writes(c, n) for n in nodes}
        assert await c.mget_nonatomic(keys) == keys
        assert {n: _writes(c, n) - before[n] for n in nodes} == {n: 1 for n in nodes}
        await c.delete(*keys)
