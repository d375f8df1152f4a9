"""Client-side caching on the sync client, against real clusters: hits, invalidation by the
server, read-your-writes, and no stale entry served after a link break, failover, slot
migration, node restart or a reply that raced an invalidation."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from clusterpool import CacheConfig, ClusterClient
from delay_proxy import DelayProxy
from waiting import poll

# The documented staleness bound: a value written by another client is not served from the cache
# once this long has passed since the write completed. Measured far below it (see the README).
STALENESS_BOUND = 2.0


def cached_client(cluster, **kw) -> ClusterClient:
    return ClusterClient(startup_nodes=cluster.startup_nodes, cache_config=CacheConfig(**kw.pop("cache", {})), **kw)


def other_client(cluster) -> redis.RedisCluster:
    return redis.RedisCluster(host=cluster.host, port=cluster.ports[0], decode_responses=False)


def _is_hit(client: ClusterClient, key: str) -> bool:
    hits = client.stats().cache.hits
    client.get(key)
    return client.stats().cache.hits > hits


def warm(client: ClusterClient, key: str, want: bytes) -> None:
    poll(lambda: client.get(key) == want and _is_hit(client, key), 10, what=f"{key} to be served from the cache")


def gets_on(cluster, port: int) -> int:
    with cluster.client(port) as r:
        return int(r.info("commandstats").get("cmdstat_get", {}).get("calls", 0))


def key_on(cluster, port: int, prefix: str) -> str:
    return next(f"{prefix}:{i}" for i in range(100000) if cluster.slot_owner(cluster.key_slot(f"{prefix}:{i}")) == port)


# ---------------------------------------------------------------- hits and invalidation


def test_a_hit_is_served_without_a_round_trip(cluster):
    with cached_client(cluster) as client:
        key = "cache:hit"
        client.set(key, "v")
        warm(client, key, b"v")
        port = cluster.slot_owner(cluster.key_slot(key))
        calls = gets_on(cluster, port)
        assert all(client.get(key) == b"v" for _ in range(200))
        assert gets_on(cluster, port) == calls


def test_another_clients_write_is_seen_once_the_server_invalidates(cluster):
    with cached_client(cluster) as client, other_client(cluster) as other:
        key = "cache:invalidate"
        client.set(key, "old")
        warm(client, key, b"old")
        other.set(key, "new")
        poll(lambda: client.get(key) == b"new", 5, what="the invalidation")
        assert client.stats().cache.invalidations >= 1


def test_a_write_by_this_client_is_read_back_at_once(cluster):
    with cached_client(cluster) as client:
        key = "cache:ryw"
        client.set(key, "0")
        warm(client, key, b"0")
        for i in range(1, 200):
            client.set(key, str(i))
            assert client.get(key) == str(i).encode()


def test_a_container_reply_handed_out_is_a_copy(cluster):
    with cached_client(cluster) as client:
        key = "cache:list"
        client.delete(key)
        client.rpush(key, "a", "b")

        def served_from_cache() -> bool:
            hits = client.stats().cache.hits
            return client.lrange(key, 0, -1) == [b"a", b"b"] and client.stats().cache.hits > hits

        poll(served_from_cache, 10, what="the list to be cached")
        got = client.lrange(key, 0, -1)
        got.append(b"mine")
        assert client.lrange(key, 0, -1) == [b"a", b"b"]


def test_reads_of_the_reader_view_are_cached_apart_from_the_primary_reads(cluster):
    with cached_client(cluster) as client:
        key = "cache:reader"
        client.set(key, "v")
        poll(lambda: client.reader.get(key) == b"v" and _is_hit(client.reader, key), 10, what="a cached replica read")
        entries = client.stats().cache.entries
        warm(client, key, b"v")
        assert client.stats().cache.entries == entries + 1  # the primary read has its own entry


def test_reads_inside_a_transaction_are_never_cached(cluster):
    with cached_client(cluster) as client:
        key = "cache:tx"
        client.set(key, "v")
        before = client.stats().cache
        pipe = client.pipeline(transaction=True)
        pipe.get(key)
        assert pipe.execute() == [b"v"]
        after = client.stats().cache
        assert (after.hits, after.misses, after.stores) == (before.hits, before.misses, before.stores)


def test_entries_stay_inside_the_byte_bound(cluster):
    limit = 256 * 1024
    with cached_client(cluster, cache={"max_size": 10**7, "max_bytes": limit}) as client:
        pipe = client.pipeline()
        for i in range(3000):
            pipe.set(f"cache:bound:{{b}}:{i}", "x" * 100)
        pipe.execute()
        warm(client, "cache:bound:{b}:0", b"x" * 100)
        for i in range(3000):
            client.get(f"cache:bound:{{b}}:{i}")
            assert client.stats().cache.bytes <= limit
        s = client.stats().cache
        assert s.evictions > 0 and s.entries > 100


# ---------------------------------------------------------------- staleness under concurrent writes


def test_no_read_is_older_than_a_write_completed_before_the_bound(cluster):
    """A writer (another client) counts hot keys up; our reads, through the cache, may lag the
    newest completed write by at most STALENESS_BOUND. The worst lag seen is printed."""
    keys = [f"cache:hot:{i}" for i in range(4)]
    done: dict[str, list[float]] = {k: [] for k in keys}  # done[k][v]: when write of value v completed
    stop = threading.Event()
    with cached_client(cluster) as client, other_client(cluster) as other:
        for k in keys:
            other.set(k, 0)
            done[k].append(time.monotonic())
            warm(client, k, b"0")

        def write() -> None:
            v = 0
            while not stop.is_set() and v < 3000:
                v += 1
                for k in keys:
                    other.set(k, v)
                    done[k].append(time.monotonic())

        writer = threading.Thread(target=write)
        writer.start()
        worst = 0.0
        reads = 0
        try:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                for k in keys:
                    start = time.monotonic()
                    v = int(client.get(k))
                    reads += 1
                    completed = done[k]
                    if v + 1 < len(completed) and completed[v + 1] < start:
                        worst = max(worst, start - completed[v + 1])
        finally:
            stop.set()
            writer.join()
        print(f"\nworst staleness {worst * 1000:.1f} ms over {reads} reads, {client.stats().cache}")
        assert worst < STALENESS_BOUND
        assert client.stats().cache.hits > 0


def test_a_reply_that_raced_an_invalidation_is_not_cached(cluster):
    """The read is answered (old value), the reply is held in the proxy while another client
    writes; the invalidation reaches us first: the old reply is returned but not kept."""
    host = cluster.host
    key = key_on(cluster, cluster.primaries()[0], "cache:race")
    port = cluster.slot_owner(cluster.key_slot(key))
    proxy = DelayProxy((host, port), 0.0, hold=b"RACE-OLD", hold_for=1.0)

    def via_proxy(h, p):
        return (h, proxy.port) if (h, p) == (host, port) else (h, p)

    try:
        with ClusterClient(startup_nodes=cluster.startup_nodes, address_map=via_proxy,
                           cache_config=CacheConfig()) as client, other_client(cluster) as other:
            other.set(key, "warm")
            warm(client, key, b"warm")  # the node's link is up
            other.set(key, "RACE-OLD")
            poll(lambda: client.stats().cache.entries == 0, 5, what="the first invalidation")
            result: list[bytes] = []
            reader = threading.Thread(target=lambda: result.append(client.get(key)))
            reader.start()
            assert proxy.held.wait(5)
            other.set(key, "new")  # its invalidation overtakes the held reply
            reader.join()
            assert result == [b"RACE-OLD"]
            assert client.get(key) == b"new"
    finally:
        proxy.close()


# ---------------------------------------------------------------- links and the cluster misbehaving


def test_killing_the_invalidation_link_drops_the_nodes_entries_and_tracking_comes_back(cluster):
    with cached_client(cluster) as client, other_client(cluster) as other:
        key = "cache:kill-link"
        client.set(key, "a")
        warm(client, key, b"a")
        port = cluster.slot_owner(cluster.key_slot(key))
        name = f"{cluster.host}:{port}"
        first = client.core.links.client_ids()[name]
        with cluster.client(port) as r:
            r.execute_command("CLIENT", "KILL", "ID", first)
        poll(lambda: client.stats().cache.flushes.get("link_broken", 0) >= 1, 5, what="the flush")
        poll(lambda: client.core.links.client_ids().get(name, first) != first, 10, what="a new link")
        warm(client, key, b"a")
        other.set(key, "b")
        poll(lambda: client.get(key) == b"b", 5, what="an invalidation through the new link")


@pytest.mark.chaos
def test_after_a_primary_is_killed_no_entry_from_it_is_served(fresh_cluster):
    c = fresh_cluster
    victim = c.primaries()[0]
    key = key_on(c, victim, "cache:failover")
    with cached_client(c) as client, other_client(c) as other:
        client.set(key, "before")
        warm(client, key, b"before")
        c.kill(victim)
        c.wait_promoted(victim)
        poll(lambda: other.set(key, "after"), 30, what="a write to the new primary")
        poll(lambda: client.get(key) == b"after", 30, what="the new value")
        assert all(client.get(key) == b"after" for _ in range(200))


@pytest.mark.chaos
def test_after_a_slot_migrates_no_entry_from_the_old_owner_is_served(fresh_cluster):
    c = fresh_cluster
    src, dst = c.primaries()[0], c.primaries()[1]
    key = key_on(c, src, "cache:migrate")
    slot = c.key_slot(key)
    with cached_client(c) as client:
        client.set(key, "before")
        warm(client, key, b"before")
        c.begin_migration(slot, dst)
        c.finish_migration(slot, dst)
        with c.client(dst) as r:
            r.set(key, "after")
        poll(lambda: client.get(key) == b"after", 30, what="the value on the new owner")
        assert all(client.get(key) == b"after" for _ in range(200))


@pytest.mark.chaos
def test_after_a_replica_restarts_its_entries_are_not_served(fresh_cluster):
    c = fresh_cluster
    replica = c.replicas()[0]
    primary = c.primary_of(replica)
    key = key_on(c, primary, "cache:restart")
    with cached_client(c) as client, other_client(c) as other:
        reader = client.reader
        other.set(key, "before")
        poll(lambda: reader.get(key) == b"before" and _is_hit(reader, key), 10, what="a cached replica read")
        c.kill(replica)
        poll(lambda: client.stats().cache.flushes.get("link_broken", 0) >= 1, 10, what="the link's flush")
        other.set(key, "after")
        c.restart(replica)
        poll(lambda: reader.get(key) == b"after", 30, what="the new value")
        assert all(reader.get(key) == b"after" for _ in range(200))


def test_closing_the_client_stops_every_link_thread(cluster):
    client = cached_client(cluster)
    client.set("cache:close", "v")
    warm(client, "cache:close", b"v")
    assert any(t.name.startswith("clusterpool-invalidate") for t in threading.enumerate())
    client.close()
    assert not any(t.name.startswith("clusterpool-invalidate") for t in threading.enumerate())


def test_an_mget_is_served_per_key_from_cached_gets(cluster):
    with cached_client(cluster) as client:
        keys = ["cache:mget:{m}:1", "cache:mget:{m}:2"]
        for k in keys:
            client.set(k, k)
            warm(client, k, k.encode())
        port = cluster.slot_owner(cluster.key_slot(keys[0]))
        with cluster.client(port) as r:
            calls = int(r.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))
            assert client.mget(keys) == [k.encode() for k in keys]
            assert int(r.info("commandstats").get("cmdstat_mget", {}).get("calls", 0)) == calls


def test_a_pipelined_write_drops_the_cached_read_of_its_key(cluster):
    with cached_client(cluster) as client:
        key = "cache:pipe"
        client.set(key, "a")
        warm(client, key, b"a")
        pipe = client.pipeline()
        pipe.set(key, "b")
        pipe.execute()
        assert client.get(key) == b"b"


def test_resp3_data_connections_are_tracked_and_invalidated_alike(cluster):
    with cached_client(cluster, protocol=3) as client, other_client(cluster) as other:
        key = "cache:resp3"
        client.set(key, "old")
        warm(client, key, b"old")
        other.set(key, "new")
        poll(lambda: client.get(key) == b"new", 5, what="the invalidation")


def test_a_user_denied_client_tracking_reads_uncached_without_reconnecting(cluster):
    from acl_users import acl_user

    with acl_user(cluster, "no_tracking") as user, cached_client(cluster, **user) as client:
        client.set("acl:cache", "v")
        for _ in range(300):
            assert client.get("acl:cache") == b"v"
        stats = client.stats()
        assert stats.cache.stores == 0 and stats.cache.hits == 0
        assert sum(p.created for p in stats.nodes) <= 6  # no reconnect per read


@pytest.mark.chaos
def test_a_link_gone_silent_counts_as_broken_and_its_nodes_entries_are_dropped(cluster):
    replica = cluster.replicas()[0]
    key = key_on(cluster, cluster.primary_of(replica), "cache:silent")
    with cached_client(cluster) as client:
        reader = client.with_read_from(lambda shard, states: next(
            (n for n in shard.replicas if n.port == replica), None) or shard.primary)
        client.set(key, "v")
        poll(lambda: reader.get(key) == b"v" and _is_hit(reader, key), 10, what="a cached read from the replica")
        cluster.pause(replica)
        try:
            poll(lambda: client.stats().cache.flushes.get("link_broken", 0) >= 1, 10, what="the silent link's flush")
            assert client.stats().cache.entries == 0
        finally:
            cluster.resume(replica)


def test_an_mget_that_misses_stores_each_value_as_its_get(cluster):
    with cached_client(cluster) as client:
        keys = ["cache:mget-miss:{m}:1", "cache:mget-miss:{m}:2"]
        for k in keys:
            client.set(k, k)
        warm(client, "cache:mget-miss:{m}:warm", None)  # the node's link is up

        def stored() -> bool:
            client.cache_flush()
            assert client.mget(keys) == [k.encode() for k in keys]
            return client.stats().cache.entries == 2

        poll(stored, 10, what="the MGET's values stored")
        hits = client.stats().cache.hits
        assert client.get(keys[0]) == keys[0].encode() and client.get(keys[1]) == keys[1].encode()
        assert client.stats().cache.hits == hits + 2
