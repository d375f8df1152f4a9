"""Client-side caching on the asyncio client against real clusters: hits without I/O, server
invalidation through the per-node links, the read/invalidate race, link loss, slot moves,
failover and restart, bounds, RESP2 and RESP3, replica reads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from async_helpers import other_tasks, tag_on, until

from clusterpool import CacheConfig
from clusterpool import ClusterClient as SyncClient
from clusterpool.asyncio import ClusterClient
from clusterpool.cachestore import CacheStats, FlushReason
from delay_proxy import DelayProxy

pytestmark = pytest.mark.asyncio

STALENESS_BOUND = 1.0  # seconds: the documented bound a cached read may lag a completed write by


def _cached(cluster, protocol: int = 2, **kw) -> ClusterClient:
    config = kw.pop("cache_config", None) or CacheConfig()
    return ClusterClient(startup_nodes=cluster.startup_nodes, protocol=protocol, cache_config=config, **kw)


def _commands_sent(client: ClusterClient) -> int:
    return sum(c.total("commands") for c in client.stats().connections)


async def _hits_again(view, read) -> bool:
    """Whether `read()` (on `view`) hits the cache the second time in a row."""
    await read()
    before = view.stats().cache.hits
    await read()
    return view.stats().cache.hits > before


async def _tracked(view, key: str) -> None:
    """Wait until a GET of `key` is stored (its node's link is up and its connection tracked)."""
    await until(lambda: _hits_again(view, lambda: view.get(key)), what=f"{key} cached")


async def _stored(c, key: str, value: str = "v") -> None:
    """Write `value` to `key` through `c` and wait until a GET of it is cached."""
    await c.set(key, value)
    await _tracked(c, key)


def _redirects_of(cluster, port: int, name: str) -> set[int]:
    """The invalidation link ids the data connections named `name` on node `port` redirect to."""
    r = cluster.client(port)
    try:
        return {int(c["redir"]) for c in r.client_list() if c.get("name") == name and int(c.get("redir", -1)) > 0}
    finally:
        r.close()


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request):
    return request.param


# ---- hits, misses, invalidation ------------------------------------------------------------------


async def test_hits_serve_without_io_and_return_the_values_written(cluster, protocol):
    tag = tag_on(cluster, cluster.primaries()[0])
    # health_interval: no CLUSTER INFO probe on the shared connections while counting
    async with _cached(cluster, protocol, decode_responses=True, health_interval=60) as c:
        await c.set(f"{tag}:s", "v1")
        await c.hset(f"{tag}:h", mapping={"a": "1", "b": "2"})
        await _tracked(c, f"{tag}:s")
        assert await c.hgetall(f"{tag}:h") == {"a": "1", "b": "2"}
        sent = _commands_sent(c)
        for _ in range(100):
            assert await c.get(f"{tag}:s") == "v1"
            assert await c.hgetall(f"{tag}:h") == {"a": "1", "b": "2"}
        assert _commands_sent(c) == sent
        assert c.stats().cache.hits >= 200


async def test_a_container_reply_changed_by_the_caller_leaves_the_entry_as_read(cluster):
    tag = tag_on(cluster, cluster.primaries()[0])
    async with _cached(cluster, decode_responses=True) as c:
        await c.rpush(f"{tag}:l", "a", "b")
        await until(lambda: _hits_again(c, lambda: c.lrange(f"{tag}:l", 0, -1)), what="list cached")
        got = await c.lrange(f"{tag}:l", 0, -1)
        got.append("mine")
        assert await c.lrange(f"{tag}:l", 0, -1) == ["a", "b"]


async def test_another_clients_write_invalidates_the_entry(cluster, protocol):
    tag = tag_on(cluster, cluster.primaries()[1])
    key = f"{tag}:inv"
    async with _cached(cluster, protocol) as c, ClusterClient(startup_nodes=cluster.startup_nodes) as other:
        await other.set(key, "old")
        await _tracked(c, key)
        assert await c.get(key) == b"old"
        await other.set(key, "new")
        await until(lambda: _reads(c, key, b"new"), timeout=10, what="the write seen through the cache")
        assert c.stats().cache.invalidations >= 1


async def test_a_task_polling_a_key_through_the_cache_sees_another_clients_write(cluster):
    key = f"{tag_on(cluster, cluster.primaries()[1])}:poll"
    async with _cached(cluster) as c, ClusterClient(startup_nodes=cluster.startup_nodes) as other:
        await other.set(key, "waiting")
        await _tracked(c, key)

        async def poll() -> int:  # only hits until the invalidation is read: no I/O of its own
            reads = 0
            while await c.get(key) != b"done":
                reads += 1
            return reads

        polling = asyncio.ensure_future(poll())
        await other.set(key, "done")  # runs only if the polling task lets the loop run
        reads = await asyncio.wait_for(polling, 30)
        print(f"\n{reads} reads before the write was seen")
        assert c.stats().cache.hits >= reads


async def _reads(c: ClusterClient, key: str, value: bytes) -> bool:
    return await c.get(key) == value


async def test_own_write_is_read_back_at_once(cluster):
    tag = tag_on(cluster, cluster.primaries()[0])
    key = f"{tag}:own"
    async with _cached(cluster) as c:
        await _stored(c, key, "0")
        for i in range(1, 50):
            await c.set(key, str(i))
            assert await c.get(key) == str(i).encode()


async def test_mget_is_served_per_key_from_get_entries(cluster):
    tag = tag_on(cluster, cluster.primaries()[2])
    keys = [f"{tag}:m{i}" for i in range(3)]
    async with _cached(cluster, health_interval=60) as c:
        for i, k in enumerate(keys):
            await c.set(k, str(i))
        await _tracked(c, keys[0])
        assert await c.mget(keys) == [b"0", b"1", b"2"]  # a miss: sent whole, stored per key
        sent = _commands_sent(c)
        assert await c.mget(keys) == [b"0", b"1", b"2"]
        assert await c.get(keys[2]) == b"2"
        assert _commands_sent(c) == sent


async def test_reads_in_pipelines_and_transactions_are_never_served_from_the_cache(cluster):
    tag = tag_on(cluster, cluster.primaries()[0])
    key = f"{tag}:p"
    async with _cached(cluster) as c:
        await _stored(c, key, "v")
        hits = c.stats().cache.hits
        async with c.pipeline() as p:
            p.get(key)
            assert await p.execute() == [b"v"]
        async with c.pipeline(transaction=True) as t:
            t.get(key)
            assert await t.execute() == [b"v"]
        assert c.stats().cache.hits == hits


class _Scope:
    def end(self, error):
        pass


class _Observer:
    """An observer that records nothing: with one set, a pipeline sends each command through
    execute_command (each in its own scope)."""

    def command(self, node, args):
        return _Scope()

    def batch(self, operation, commands):
        return _Scope()

    def used(self, node):
        pass

    def failure(self, action, failure, error):
        pass


async def test_a_pipeline_sent_through_execute_command_is_not_served_from_the_cache(cluster):
    tag = tag_on(cluster, cluster.primaries()[0])
    keys = [f"{tag}:pm{i}" for i in range(2)]
    async with _cached(cluster) as c:
        for k in keys:
            await _stored(c, k)
        c.set_observer(_Observer())
        hits = c.stats().cache.hits
        async with c.pipeline() as p:
            p.mget(keys)
            p.get(keys[0])
            assert await p.execute() == [[b"v", b"v"], b"v"]
        assert c.stats().cache.hits == hits
        assert await c.get(keys[0]) == b"v"
        assert c.stats().cache.hits == hits + 1  # outside the pipeline: served from the cache


async def test_cache_flush_drops_everything_and_counts_a_user_flush(cluster):
    tag = tag_on(cluster, cluster.primaries()[0])
    async with _cached(cluster) as c:
        await _stored(c, f"{tag}:f", "v")
        assert c.cache_flush() >= 1
        s = c.stats().cache
        assert s.entries == 0 and s.bytes == 0 and s.flushes[FlushReason.USER] == 1


async def test_the_plain_client_never_serves_an_entry_read_from_a_replica(cluster):
    tag = tag_on(cluster, cluster.primaries()[0])
    key = f"{tag}:rr"
    async with _cached(cluster) as c:
        await c.set(key, "v")
        await c.wait(1, 1000)
        await _tracked(c.reader, key)
        assert c.reader.node_for(key, read=True).role == "replica"
        hits = c.stats().cache.hits
        await c.get(key)
        assert c.stats().cache.hits == hits  # the reader's entry is not the plain client's


async def test_cached_replica_reads_are_invalidated_by_the_replica(cluster):
    tag = tag_on(cluster, cluster.primaries()[1])
    key = f"{tag}:rep"
    async with _cached(cluster) as c, ClusterClient(startup_nodes=cluster.startup_nodes) as other:
        await other.set(key, "old")
        await other.wait(1, 1000)
        reader = c.reader
        await _tracked(reader, key)
        assert reader.node_for(key, read=True).role == "replica"
        await other.set(key, "new")
        await until(lambda: _reads(reader, key, b"new"), timeout=10, what="the replica's invalidation")


async def test_a_user_denied_client_tracking_reads_uncached_without_reconnecting(cluster):
    from acl_users import acl_user

    with acl_user(cluster, "no_tracking") as user:
        async with _cached(cluster, **user) as c:
            await c.set("acl:cache", "v")
            for _ in range(300):
                assert await c.get("acl:cache") == b"v"
            stats = c.stats()
            assert stats.cache.stores == 0 and stats.cache.hits == 0
            assert sum(n.opened_shared for n in stats.connections) <= len(stats.connections)  # no reconnect per read


@pytest.mark.chaos
async def test_a_link_gone_silent_counts_as_broken_and_its_nodes_entries_are_dropped(cluster):
    replica = cluster.replicas()[0]
    key = f"{tag_on(cluster, cluster.primary_of(replica))}:silent"
    async with _cached(cluster) as c:
        reader = c.with_read_from(lambda shard, states: next(
            (n for n in shard.replicas if n.port == replica), None) or shard.primary)
        await c.set(key, "v")
        await _tracked(reader, key)
        cluster.pause(replica)
        try:
            await _link_lost(c)
            assert c.stats().cache.entries == 0
        finally:
            cluster.resume(replica)


# ---- the read/invalidate race --------------------------------------------------------------------


async def test_a_reply_invalidated_while_in_flight_is_not_cached(cluster, protocol):
    primary = cluster.primaries()[0]
    host = cluster.host
    proxy = DelayProxy((host, primary), delay=0, hold=b"$3\r\nold\r\n", hold_for=120)  # held until release()

    def through_proxy(h, p):
        return (h, proxy.port) if (h, p) == (host, primary) else (h, p)

    tag = tag_on(cluster, primary)
    key, marker = f"{tag}:race", f"{tag}:marker"
    try:
        async with _cached(cluster, protocol, address_map=through_proxy) as c, \
                ClusterClient(startup_nodes=cluster.startup_nodes) as other:
            await other.set(key, "old")
            await other.set(marker, "m")
            await _tracked(c, marker)
            stores = c.stats().cache.stores
            read = asyncio.ensure_future(c.get(key))
            await until(proxy.held.is_set, what="the reply held by the proxy")
            invalidations = c.stats().cache.invalidations
            await other.set(key, "new")
            await other.set(marker, "m2")  # the link delivers in order: once this is read, so is key's
            await until(lambda: c.stats().cache.invalidations > invalidations, what="the marker's invalidation")
            proxy.release()
            assert await read == b"old"  # read before the write: its answer, but not cached
            assert c.stats().cache.stores == stores
            assert await c.get(key) == b"new"
    finally:
        proxy.close()


# ---- staleness under writes ----------------------------------------------------------------------


def _writer(cluster, keys: list[str], done: dict[str, list[tuple[float, int]]], stop: threading.Event) -> None:
    """Writes increasing values to random hot keys, recording when each write completed."""
    import random

    rng = random.Random(7)
    with SyncClient(startup_nodes=cluster.startup_nodes) as w:
        seq = 0
        while not stop.is_set():
            seq += 1
            k = rng.choice(keys)
            w.set(k, str(seq))
            done[k].append((time.monotonic(), seq))


async def test_no_read_is_older_than_a_write_completed_more_than_the_bound_earlier(cluster, protocol):
    tags = [tag_on(cluster, p) for p in cluster.primaries()]
    keys = [f"{t}:hot{i}" for t in tags for i in range(3)]
    done: dict[str, list[tuple[float, int]]] = {k: [(0.0, 0)] for k in keys}
    async with _cached(cluster, protocol) as c:
        for k in keys:
            await c.set(k, "0")
        await _tracked(c, keys[0])
        stop = threading.Event()
        writer = threading.Thread(target=_writer, args=(cluster, keys, done, stop), daemon=True)
        writer.start()
        reads: list[tuple[str, float, int]] = []
        try:
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                for k in keys:
                    started = time.monotonic()
                    reads.append((k, started, int(await c.get(k))))  # hits yield to the loop now and then
        finally:
            stop.set()
            writer.join(10)
        worst = 0.0
        for k, started, seq in reads:
            writes = list(done[k])
            # the first write newer than what was read: how long before the read had it completed?
            newer = next((t for t, s in writes if s > seq), None)
            if newer is not None and newer < started:
                worst = max(worst, started - newer)
        print(f"\nprotocol {protocol}: {len(reads)} reads, {c.stats().cache.hits} hits, "
              f"worst staleness {worst * 1000:.2f} ms")
        assert worst < STALENESS_BOUND
        assert c.stats().cache.hits > 0


# ---- losing the link -----------------------------------------------------------------------------


async def test_killing_the_link_drops_the_nodes_entries_and_tracking_comes_back(cluster, protocol):
    primary = cluster.primaries()[2]
    tag = tag_on(cluster, primary)
    key = f"{tag}:kill"
    name = f"cachekill-{time.monotonic_ns()}"
    async with _cached(cluster, protocol, client_name=name) as c, ClusterClient(startup_nodes=cluster.startup_nodes) as other:
        await other.set(key, "a")
        await _tracked(c, key)
        (link,) = _redirects_of(cluster, primary, name)
        r = cluster.client(primary)
        try:
            r.execute_command("CLIENT", "KILL", "ID", link)
        finally:
            r.close()
        await _link_lost(c)
        assert c.stats().cache.entries == 0
        await _tracked(c, key)  # a new link, new tracked connections
        assert _redirects_of(cluster, primary, name) - {link}
        await other.set(key, "b")
        await until(lambda: _reads(c, key, b"b"), timeout=10, what="invalidation through the new link")


# ---- bounds and shutdown -------------------------------------------------------------------------


async def test_many_distinct_keys_stay_within_the_byte_bound(cluster):
    tag = tag_on(cluster, cluster.primaries()[0])
    bound = 512 * 1024  # about 2,000 of these entries: 20,000 keys go through it ten times over
    n = 20_000  # (a million distinct keys through the byte bound: tests/unit/test_cachestore.py)
    async with _cached(cluster, cache_config=CacheConfig(max_size=10**7, max_bytes=bound)) as c:
        await c.set(f"{tag}:big", "x" * 100)
        await _tracked(c, f"{tag}:big")
        async with c.pipeline() as p:
            for i in range(0, n):
                p.set(f"{tag}:b{i}", "x" * 100)
            await p.execute()
        peak = 0
        for i in range(n):
            await c.get(f"{tag}:b{i}")
            if i % 1000 == 0:
                peak = max(peak, c.stats().cache.bytes)
        s = c.stats().cache
        assert max(peak, s.bytes) <= bound
        assert s.evictions > 0 and s.stores >= n


async def test_aclose_ends_every_link_task_and_socket(cluster):
    before = other_tasks()
    c = _cached(cluster)
    tag = tag_on(cluster, cluster.primaries()[0])
    await _stored(c, f"{tag}:close", "v")
    await c.aclose()
    assert other_tasks() - before == set()


# ---- failover, migration, restart (private clusters) ---------------------------------------------


async def _write_until_done(other: ClusterClient, key: str, value: str) -> None:
    """Write `value` once the cluster takes writes for `key` again (recovery may still be under way)."""
    async def wrote() -> bool:
        try:
            return bool(await other.set(key, value))
        except Exception:  # noqa: BLE001 - the cluster is still recovering
            return False
    await until(wrote, timeout=60, what=f"a write of {key} accepted")


async def _serves_only(c: ClusterClient, key: str, value: bytes) -> None:
    """Once a read through the cache returns `value`, no later read returns anything else."""
    async def fresh() -> bool:
        try:
            return await c.get(key) == value
        except Exception:  # noqa: BLE001 - our client is still recovering
            return False
    await until(fresh, timeout=60, what=f"{key} read as {value!r}")
    for _ in range(200):
        assert await c.get(key) == value
        await asyncio.sleep(0)


async def _no_stale_entry_after(cluster, port: int, disrupt) -> CacheStats:
    """Cache a key of node `port`, run `disrupt(client, key)`, then check that a write made after
    recovery is what the cache serves, and that the key is cached and invalidated again."""
    key = f"{tag_on(cluster, port)}:recover"
    async with _cached(cluster) as c, ClusterClient(startup_nodes=cluster.startup_nodes) as other:
        await other.set(key, "before")
        await _tracked(c, key)
        await disrupt(c, key)
        await _write_until_done(other, key, "after")
        await _serves_only(c, key, b"after")
        await _tracked(c, key)  # cached again from the node serving it now, and invalidated by it
        await other.set(key, "later")
        await _serves_only(c, key, b"later")
        return c.stats().cache


async def _link_lost(c: ClusterClient) -> None:
    await until(lambda: c.stats().cache.flushes.get(FlushReason.LINK_BROKEN, 0) >= 1, what="the link's loss seen")


async def test_a_kill_9_failover_leaves_no_stale_entry_served(fresh_cluster):
    primary = fresh_cluster.primaries()[0]

    async def failover(c, key):
        fresh_cluster.kill(primary)
        await _link_lost(c)
        fresh_cluster.wait_promoted(primary)

    await _no_stale_entry_after(fresh_cluster, primary, failover)


async def test_a_slot_migration_leaves_no_stale_entry_served(fresh_cluster):
    src, dst = fresh_cluster.primaries()[0], fresh_cluster.primaries()[1]

    async def migrate(c, key):
        fresh_cluster.move_slot(c.slot(key), dst)

    stats = await _no_stale_entry_after(fresh_cluster, src, migrate)
    assert stats.flushes.get(FlushReason.SLOT_MOVED, 0) >= 1


async def test_a_node_restart_leaves_no_stale_entry_served(fresh_cluster):
    primary = fresh_cluster.primaries()[2]

    async def restart(c, key):
        fresh_cluster.kill(primary)
        fresh_cluster.restart(primary)  # back before (or after, as it happens) its replica takes over
        await _link_lost(c)

    await _no_stale_entry_after(fresh_cluster, primary, restart)


async def test_another_clients_flushall_drops_the_nodes_entries(fresh_cluster):
    primary = fresh_cluster.primaries()[0]
    key = f"{tag_on(fresh_cluster, primary)}:flushed"
    async with _cached(fresh_cluster) as c:
        await _stored(c, key)
        with fresh_cluster.client(primary) as r:
            r.flushall()
        await until(lambda: c.stats().cache.flushes.get(FlushReason.SERVER_FLUSH, 0) >= 1, what="the server's flush")
        assert await c.get(key) is None


async def test_entries_expire_after_the_ttl(cluster):
    key = f"{tag_on(cluster, cluster.primaries()[0])}:ttl"
    async with _cached(cluster, cache_config=CacheConfig(ttl=0.2)) as c:
        await _stored(c, key)  # served from the cache within the TTL

        async def expired() -> bool:
            assert await c.get(key) == b"v"
            return c.stats().cache.expired >= 1
        await until(expired, what="the entry expired")


# ---- visibility ----------------------------------------------------------------------------------


async def test_prometheus_reports_the_cache(cluster):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from clusterpool.metrics import PoolCollector

    tag = tag_on(cluster, cluster.primaries()[0])
    async with _cached(cluster) as c:
        await _stored(c, f"{tag}:prom", "v")
        c.cache_flush()
        registry = CollectorRegistry()
        registry.register(PoolCollector(c))
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
        assert families["clusterpool_cache_hits"].samples[0].value >= 1
        assert families["clusterpool_cache_misses"].samples[0].value >= 1
        assert {s.labels["reason"]: s.value for s in families["clusterpool_cache_flushes"].samples} == {"user": 1}
        assert families["clusterpool_cache_entries"].samples[0].value == 0


async def test_opentelemetry_reports_the_cache(cluster):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from clusterpool import otel

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    tag = tag_on(cluster, cluster.primaries()[0])
    try:
        async with _cached(cluster) as c:
            inst = otel.instrument(c, meter_provider=provider)
            await _stored(c, f"{tag}:otel", "v")
            c.cache_flush()
            data = reader.get_metrics_data()
            points = {m.name: list(m.data.data_points) for rm in data.resource_metrics
                      for sm in rm.scope_metrics for m in sm.metrics}
            inst.uninstrument()
        requests = {p.attributes["clusterpool.cache.result"]: p.value for p in points["clusterpool.client.cache.requests"]}
        assert requests["hit"] >= 1 and requests["miss"] >= 1
        assert points["clusterpool.client.cache.entries"][0].value == 0
        drops = {p.attributes["clusterpool.cache.reason"]: p.value for p in points["clusterpool.client.cache.drops"]}
        assert drops["flush.user"] == 1
    finally:
        provider.shutdown()
