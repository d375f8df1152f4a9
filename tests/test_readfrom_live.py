"""Replica reads: where commands land, counted with each node's INFO commandstats."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

import clusterpool
from clusterpool import ClusterClient
from clusterpool.testing import LocalCluster
from landing import Landing, keys_by_shard
from waiting import poll


def assert_even(counts, tolerance=0.2):
    mean = sum(counts.values()) / len(counts)
    assert mean > 0, counts
    for port, n in counts.items():
        assert abs(n - mean) <= tolerance * mean, (port, counts)


@pytest.fixture
def client(cluster):
    c = ClusterClient(startup_nodes=cluster.startup_nodes)
    c.ping()
    yield c
    c.close()


@pytest.fixture(scope="module")
def wide():
    """2 primaries x 2 replicas: shards with more than one replica."""
    c = LocalCluster(primaries=2, replicas=2).start(timeout=60)
    try:
        yield c
    finally:
        c.stop()


# ---------------------------------------------------------------- reader / writer views


def test_reader_reads_hit_only_replicas_evenly(cluster, client):
    keys = [k for ks in keys_by_shard(cluster, 100).values() for k in ks]
    with Landing(cluster, "get") as land:
        for _ in range(10):
            for k in keys:
                client.reader.get(k)
    assert sum(land.on(cluster.primaries()).values()) == 0
    replicas = land.on(cluster.replicas())
    assert sum(replicas.values()) == 3000
    assert_even(replicas)


def test_reader_uses_every_replica_of_a_shard_evenly(wide):
    primary = wide.primaries()[0]
    keys = keys_by_shard(wide, 50)[primary]
    with ClusterClient(startup_nodes=wide.startup_nodes) as c, Landing(wide, "get") as land:
        for _ in range(12):
            for k in keys:
                c.reader.get(k)
    replicas = wide.replicas_of(primary)
    assert len(replicas) == 2
    assert sum(land.delta.values()) == 600
    assert_even(land.on(replicas))


def test_writes_and_default_reads_through_client_hit_only_primaries(cluster, client):
    # INCRBYFLOAT is replicated as SET, so replicas' cmdstat_incrbyfloat counts only
    # commands clients sent to them.
    keys = [k for ks in keys_by_shard(cluster, 20).values() for k in ks]
    with Landing(cluster, "incrbyfloat") as w, Landing(cluster, "get") as r:
        for k in keys:
            client.incrbyfloat(k, 1.5)
            client.get(k)
    assert sum(w.on(cluster.replicas()).values()) == 0
    assert sum(w.on(cluster.primaries()).values()) == len(keys)
    assert sum(r.on(cluster.replicas()).values()) == 0
    assert sum(r.on(cluster.primaries()).values()) == len(keys)


def test_reader_set_raises_write_on_reader_before_sending(cluster, client):
    with Landing(cluster, "set") as land:
        with pytest.raises(clusterpool.WriteOnReaderError):
            client.reader.set("wr" + uuid.uuid4().hex, 1)
        with pytest.raises(redis.exceptions.ReadOnlyError):
            client.reader.set("wr" + uuid.uuid4().hex, 1)
    assert sum(land.delta.values()) == 0


def test_writer_get_sees_the_write_just_made(client):
    k = "w" + uuid.uuid4().hex
    for i in range(200):
        client.set(k, i)
        assert client.writer.get(k) == str(i).encode()


def test_read_from_replica_option_spreads_reads_like_reader(cluster):
    keys = [k for ks in keys_by_shard(cluster, 100).values() for k in ks]
    with ClusterClient(startup_nodes=cluster.startup_nodes, read_from="replica") as c:
        c.ping()
        with Landing(cluster, "get") as land:
            for _ in range(10):
                for k in keys:
                    c.get(k)
    assert sum(land.on(cluster.primaries()).values()) == 0
    assert_even(land.on(cluster.replicas()))


def test_read_from_replicas_true_means_replica_reads(cluster):
    keys = [k for ks in keys_by_shard(cluster, 20).values() for k in ks]
    with ClusterClient(startup_nodes=cluster.startup_nodes, read_from_replicas=True) as c:
        assert c.read_from == "replica"
        c.ping()
        with Landing(cluster, "get") as land:
            for k in keys:
                c.get(k)
    assert sum(land.on(cluster.primaries()).values()) == 0
    assert sum(land.on(cluster.replicas()).values()) == len(keys)


# ---------------------------------------------------------------- replica trouble


def test_reader_keeps_succeeding_with_a_replica_killed(fresh_cluster):
    c = fresh_cluster
    keys = [k for ks in keys_by_shard(c, 20).values() for k in ks]
    victim = c.replicas()[0]
    with ClusterClient(startup_nodes=c.startup_nodes) as client:
        for k in keys:
            client.set(k, k)
            client.reader.get(k)  # warm connections to every replica
        c.kill(victim)
        errors = []
        for i in range(500):
            k = keys[i % len(keys)]
            try:
                v = client.reader.get(k)
                assert v in (None, k.encode())
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        assert not errors, errors[:3]


def test_reader_keeps_succeeding_with_a_replica_paused(fresh_cluster):
    c = fresh_cluster
    keys = [k for ks in keys_by_shard(c, 20).values() for k in ks]
    victim = c.replicas()[0]
    with ClusterClient(startup_nodes=c.startup_nodes, socket_timeout=0.5) as client:
        for k in keys:
            client.set(k, k)
            client.reader.get(k)
        c.pause(victim)
        try:
            errors = []
            for i in range(500):
                k = keys[i % len(keys)]
                try:
                    client.reader.get(k)
                except Exception as e:  # noqa: BLE001
                    errors.append(e)
            assert not errors, errors[:3]
        finally:
            c.resume(victim)


# ---------------------------------------------------------------- strategies


def _reads(cluster, view, keys, rounds=6):
    with Landing(cluster, "get") as land:
        for _ in range(rounds):
            for k in keys:
                view.get(k)
    return land


def test_strategy_primary_reads_only_primaries(wide):
    keys = [k for ks in keys_by_shard(wide, 30).values() for k in ks]
    with ClusterClient(startup_nodes=wide.startup_nodes, read_from="primary") as c:
        land = _reads(wide, c.with_read_from("primary"), keys)
    assert sum(land.on(wide.replicas()).values()) == 0
    assert all(n > 0 for n in land.on(wide.primaries()).values())


@pytest.mark.parametrize("name", ["replica", "replica_preferred"])
def test_strategy_replica_reads_only_replicas_all_of_them(wide, name):
    keys = [k for ks in keys_by_shard(wide, 30).values() for k in ks]
    with ClusterClient(startup_nodes=wide.startup_nodes) as c:
        land = _reads(wide, c.with_read_from(name), keys)
    assert sum(land.on(wide.primaries()).values()) == 0
    assert_even(land.on(wide.replicas()))


def test_strategy_any_reads_primaries_and_replicas(wide):
    keys = [k for ks in keys_by_shard(wide, 30).values() for k in ks]
    with ClusterClient(startup_nodes=wide.startup_nodes) as c:
        land = _reads(wide, c.with_read_from("any"), keys)
    assert_even(land.delta)  # primary and both replicas of each shard take turns


def test_strategy_nearest_reads_nodes_of_the_keys_shard(wide):
    primary = wide.primaries()[0]
    keys = keys_by_shard(wide, 30)[primary]
    shard = {primary, *wide.replicas_of(primary)}
    with ClusterClient(startup_nodes=wide.startup_nodes, health_interval=0.1) as c:
        c.ping()
        poll(
            lambda: all(n.latency_ms is not None for n in c.topology().nodes),
            what="latency measured",
        )
        land = _reads(wide, c.with_read_from("nearest"), keys)
    used = {p for p, n in land.delta.items() if n}
    assert used and used <= shard
    assert sum(land.delta.values()) == 6 * len(keys)


def test_strategy_custom_callable_picks_the_node(wide):
    keys = [k for ks in keys_by_shard(wide, 20).values() for k in ks]
    seen = []
    lock = threading.Lock()

    def last_replica(shard, states):
        with lock:
            seen.append(shard.id)
        return sorted(shard.replicas, key=lambda n: n.port)[-1]

    chosen = {max(wide.replicas_of(p)) for p in wide.primaries()}
    with ClusterClient(startup_nodes=wide.startup_nodes, read_from=last_replica) as c:
        land = _reads(wide, c, keys, rounds=2)
    assert len(seen) == 2 * len(keys)
    assert {p for p, n in land.delta.items() if n} == chosen
