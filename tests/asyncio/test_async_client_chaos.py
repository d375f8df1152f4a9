"""clusterpool.asyncio.ClusterClient while the cluster changes: a slot migrated under 1,000 writing
tasks (ASK, then MOVED), and a primary killed under load (breaker, refresh, promotion)."""

from __future__ import annotations

import asyncio

import pytest
from async_helpers import other_tasks, tag_on, until

from clusterpool.asyncio import ClusterClient
from clusterpool.errors import RetryTimeoutError, UnknownOutcomeError
from clusterpool.slots import key_slot

pytestmark = [pytest.mark.asyncio, pytest.mark.chaos]


async def test_a_slot_migrated_while_1000_tasks_write_to_it_loses_nothing(fresh_cluster):
    cluster = fresh_cluster
    src, dst = cluster.primaries()[:2]
    tag = tag_on(cluster, src)
    slot = key_slot(tag[1:-1].encode())
    keys = [f"{tag}:m{i}" for i in range(1000)]
    async with ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True) as c:
        assert await asyncio.gather(*(c.set(k, "old") for k in keys[::2])) == [True] * 500
        await asyncio.to_thread(cluster.begin_migration, slot, dst)
        migrating = asyncio.ensure_future(asyncio.to_thread(
            lambda: (cluster.migrate_keys(slot, dst, batch=20), cluster.finish_migration(slot, dst))))
        last: dict[int, str] = {}

        async def writer(i: int) -> int:
            rounds = 0
            while rounds < 2 or not migrating.done():  # writes before, during and after the move
                value = f"{i}:{rounds}"
                assert await c.set(keys[i], value) is True
                last[i] = value
                rounds += 1
                await asyncio.sleep(0)
            return rounds

        rounds = await asyncio.gather(*(writer(i) for i in range(1000)))
        await migrating
        assert min(rounds) >= 2
        got = await asyncio.gather(*(c.get(k) for k in keys))
        assert got == [last[i] for i in range(1000)]
        assert c.node_for(keys[0]).port == dst
    assert cluster.client(dst).cluster("countkeysinslot", slot) == 1000
    # the writes in the middle of the move went through ASK redirects (ASKING + command)
    assert cluster.client(dst).info("commandstats")["cmdstat_asking"]["calls"] > 0


async def test_a_primary_killed_under_load_recovers_after_promotion(fresh_cluster):
    cluster = fresh_cluster
    victim = cluster.primaries()[0]
    tag = tag_on(cluster, victim)
    async with ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True, retry_timeout=30.0,
                             retry_unknown_outcome=True, refresh_timeout=0.5) as c:
        stop = asyncio.Event()
        done = [0] * 100
        last: dict[int, int] = {}

        async def worker(i: int) -> None:
            n = 0
            while not stop.is_set():
                assert await c.set(f"{tag}:w{i}", n) is True  # SET is idempotent: retried when sent
                last[i] = n
                n += 1
                done[i] = n

        workers = asyncio.gather(*(worker(i) for i in range(100)))
        while sum(done) < 1000:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(cluster.kill, victim)
        new_primary = await asyncio.to_thread(cluster.wait_promoted, victim, 60)
        after = list(done)
        while min(d - a for d, a in zip(done, after)) < 5:  # every task wrote again after the promotion
            if workers.done():
                break
            await asyncio.sleep(0.01)
        stop.set()
        await workers  # raises if any command failed
        values = await asyncio.gather(*(c.get(f"{tag}:w{i}") for i in range(100)))
        assert values == [str(last[i]) for i in range(100)]
        assert c.node_for(tag).port == new_primary
    assert other_tasks() == set()


async def test_a_write_sent_to_a_node_that_stops_answering_is_an_unknown_outcome(fresh_cluster):
    cluster = fresh_cluster
    port = cluster.primaries()[0]
    tag = tag_on(cluster, port)
    async with ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True, socket_timeout=0.5) as c:
        assert await c.set(f"{tag}:u", 1) is True
        await asyncio.to_thread(cluster.pause, port)
        try:
            with pytest.raises(UnknownOutcomeError):
                await c.set(f"{tag}:u", 2)
        finally:
            await asyncio.to_thread(cluster.resume, port)


async def test_a_moved_reply_repoints_the_slot_and_the_command_succeeds(fresh_cluster):
    cluster = fresh_cluster
    src, dst = cluster.primaries()[:2]
    tag = tag_on(cluster, src)
    slot = key_slot(tag[1:-1].encode())
    async with ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True) as c:
        assert await c.set(f"{tag}:m", "before") is True
        await asyncio.to_thread(cluster.move_slot, slot, dst)
        assert c.node_for(f"{tag}:m").port == src
        assert await c.get(f"{tag}:m") == "before"  # MOVED, then the new owner
        assert c.node_for(f"{tag}:m").port == dst


async def test_replies_cut_off_by_the_deadline_never_reach_another_caller(fresh_cluster):
    c = fresh_cluster
    tag = "{deadline-mux}"
    owner = c.slot_owner(key_slot(tag.encode()))
    keys = [f"{tag}:{i}" for i in range(50)]
    client = ClusterClient(startup_nodes=c.startup_nodes, retry_timeout=0.5)
    try:
        for i, k in enumerate(keys):
            await client.set(k, i)
        c.pause(owner)
        try:
            cut = await asyncio.gather(*(client.get(k) for k in keys), return_exceptions=True)
            assert all(isinstance(r, RetryTimeoutError) for r in cut), cut
        finally:
            c.resume(owner)  # the server now answers the abandoned GETs on the same connections

        async def own_replies() -> bool:
            try:
                got = await asyncio.gather(*(client.get(k) for k in reversed(keys)))
            except Exception:  # noqa: BLE001 - the breaker may still be cooling down
                return False
            assert got == [str(i).encode() for i in reversed(range(len(keys)))], got
            return True

        await until(own_replies, timeout=30, what="every GET to get its own reply after the pause")
    finally:
        await client.aclose()


async def test_manual_failovers_under_write_traffic_fail_no_write(fresh_cluster):
    """A role change replaces a node's connections; what was in flight on the old ones finishes
    there. (It used to be cut: 20 writes per failover ended as UnknownOutcomeError and the new
    primary's breaker opened, stalling every writer until the probe.) Whether a breaker may still
    open during a manual failover is not asserted: it did once on uvloop, cause not found yet."""
    cluster = fresh_cluster
    async with ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True) as c:
        await c.initialize()
        stop = asyncio.Event()
        done = [0] * 20

        async def writer(i: int) -> None:
            while not stop.is_set():
                await c.set(f"fo:{i}:{done[i] % 50}", done[i])  # keys on every shard
                done[i] += 1

        tasks = [asyncio.create_task(writer(i)) for i in range(20)]
        try:
            pairs = [(p, cluster.replicas_of(p)[0]) for p in cluster.primaries()]
            for a, b in pairs + pairs:  # each shard over, then back
                replica = a if cluster.role(a) == "replica" else b
                before = sum(done)
                await asyncio.to_thread(cluster.failover, replica)
                await until(lambda r=replica: any(n.port == r for n in c.nodes("primary")),
                            what="the client to see the promotion")
                await until(lambda b=before: sum(done) > b + 1000, what="writes to go on after the failover")
        finally:
            stop.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [r for r in results if r is not None] == []  # no write failed
