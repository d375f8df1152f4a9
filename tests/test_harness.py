"""Tests of the local cluster harness itself (scripts/cluster.py), against real
redis-server processes. Destructive tests use ``fresh_cluster``."""

from __future__ import annotations

import os
import socket

import pytest
import redis
from clusterpool.testing.cluster import NUM_SLOTS, LocalCluster
from clusterpool.testing.processes import pid_alive

pytestmark = pytest.mark.slow


def _key_in_slot_owned_by(c: LocalCluster, port: int, prefix: str = "k") -> tuple[str, int]:
    slots = set(c.slots_of(port))
    for i in range(100000):
        key = f"{prefix}{i}"
        s = LocalCluster.key_slot(key)
        if s in slots:
            return key, s
    raise AssertionError("no key found")


def _port_bindable(port: int) -> bool:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_key_slot_matches_server(cluster):
    with cluster.client(cluster.primaries()[0]) as r:
        for key in ("foo", "bar", "{user1}.a", "x{}y", "", "héllo"):
            assert LocalCluster.key_slot(key) == r.cluster("KEYSLOT", key)


def test_all_slots_covered_three_primaries_one_replica_each(cluster):
    prim = cluster.primaries()
    assert len(prim) == 3
    assert sum(len(cluster.slots_of(p)) for p in prim) == NUM_SLOTS
    for p in prim:
        assert cluster.role(p) == "primary"
        reps = cluster.replicas_of(p)
        assert len(reps) == 1
        assert cluster.role(reps[0]) == "replica"
        assert cluster.primary_of(reps[0]) == p
    assert cluster.slot_owner(0) in prim and cluster.slot_owner(NUM_SLOTS - 1) in prim
    assert len(cluster.startup_nodes) == 6
    for p in cluster.ports:
        assert cluster.cluster_info(p)["cluster_state"] == "ok"


def test_session_cluster_serves_keys(cluster, startup_nodes, cluster_url):
    assert cluster_url.startswith("redis://127.0.0.1:")
    rc = redis.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in startup_nodes],
        decode_responses=True,
        socket_timeout=2,
    )
    try:
        for i in range(20):
            rc.set(f"harness:{i}", i)
        assert [rc.get(f"harness:{i}") for i in range(20)] == [str(i) for i in range(20)]
        rc.delete(*[f"harness:{i}" for i in range(20)])
    finally:
        rc.close()


@pytest.mark.chaos
def test_kill_primary_promotes_its_replica(fresh_cluster):
    c = fresh_cluster
    victim = c.primaries()[0]
    replica = c.replicas_of(victim)[0]
    slots = c.slots_of(victim)
    c.kill(victim)
    assert not c.is_running(victim)
    new = c.wait_promoted(victim)
    assert new == replica
    assert c.role(new) == "primary"
    assert c.slots_of(new) == slots
    assert victim not in c.primaries()
    c.wait_ok(timeout=5)


@pytest.mark.chaos
def test_killed_primary_restarted_rejoins_as_replica(fresh_cluster):
    c = fresh_cluster
    victim = c.primaries()[0]
    old_id = c.node_id(victim)
    c.kill(victim)
    new = c.wait_promoted(victim)
    c.restart(victim)
    assert c.is_running(victim)
    assert c.node_id(victim) == old_id
    assert c.role(victim) == "replica"
    assert c.primary_of(victim) == new
    assert c.replicas_of(new) == [victim]


@pytest.mark.chaos
def test_pause_and_resume(fresh_cluster):
    c = fresh_cluster
    port = c.replicas()[0]
    c.pause(port)
    assert c.is_paused(port) and c.is_running(port)
    with c.client(port, socket_timeout=0.3) as r, pytest.raises(redis.exceptions.TimeoutError):
        r.ping()
    c.resume(port)
    assert not c.is_paused(port)
    with c.client(port) as r:
        assert r.ping()
    c.wait_ok(timeout=20)


@pytest.mark.chaos
def test_manual_failover_swaps_roles(fresh_cluster):
    c = fresh_cluster
    primary = c.primaries()[1]
    replica = c.replicas_of(primary)[0]
    slots = c.slots_of(primary)
    c.failover(replica)
    assert c.role(replica) == "primary"
    assert c.role(primary) == "replica"
    assert c.primary_of(primary) == replica
    assert c.slots_of(replica) == slots


@pytest.mark.chaos
def test_step_by_step_migration_ask_then_moved(fresh_cluster):
    c = fresh_cluster
    src, dst = c.primaries()[0], c.primaries()[1]
    key, slot = _key_in_slot_owned_by(c, src, "mig")
    other = "{" + key + "}:other"  # hash tag -> same slot
    assert LocalCluster.key_slot(other) == slot
    with c.client(src) as r:
        r.set(key, "v1")
        r.set(other, "v2")  # same slot (hash tag), stays behind for a while
    assert c.begin_migration(slot, dst) == src
    moved = c.migrate_keys(slot, dst, count=1)
    assert moved == 1
    with c.client(src) as r, c.client(dst) as d:
        keys_left = r.cluster("GETKEYSINSLOT", slot, 10)
        assert len(keys_left) == 1
        migrated = key if key not in keys_left else other
        with pytest.raises(redis.exceptions.ResponseError) as ei:
            r.get(migrated)
        assert isinstance(ei.value, redis.exceptions.AskError) or str(ei.value).startswith("ASK")
        assert f":{dst}" in str(ei.value) or getattr(ei.value, "node_addr", (None, None))[1] == dst
        # the key still on the source is served normally
        assert r.get(keys_left[0]) in ("v1", "v2")
        # the destination answers for it after ASKING
        d.execute_command("ASKING")
        assert d.get(migrated) in ("v1", "v2")
    c.finish_migration(slot, dst)
    assert c.slot_owner(slot) == dst
    with c.client(src) as r, c.client(dst) as d:
        with pytest.raises(redis.exceptions.ResponseError) as ei:
            r.get(key)
        assert isinstance(ei.value, redis.exceptions.MovedError) or str(ei.value).startswith(
            "MOVED"
        )
        assert d.get(key) == "v1" and d.get(other) == "v2"


@pytest.mark.chaos
def test_add_replica_then_remove_it(fresh_cluster):
    c = fresh_cluster
    primary = c.primaries()[2]
    new = c.add_node(replica_of=primary)
    assert new in c.ports
    assert c.role(new) == "replica"
    assert c.primary_of(new) == primary
    assert new in c.replicas_of(primary)
    c.remove_node(new)
    assert new not in c.ports
    assert len(c.replicas_of(primary)) == 1
    for p in c.ports:
        with c.client(p) as r:
            assert f":{new}@" not in r.execute_command("CLUSTER", "NODES")


@pytest.mark.chaos
def test_add_empty_primary_take_slot_then_remove(fresh_cluster):
    c = fresh_cluster
    new = c.add_node()
    assert c.role(new) == "primary" and c.slots_of(new) == []
    src = c.primaries()[0]
    slot = c.slots_of(src)[0]
    c.move_slot(slot, new)
    assert c.slot_owner(slot) == new
    with pytest.raises(ValueError, match="slot"):
        c.remove_node(new)
    c.move_slot(slot, src)
    c.remove_node(new)
    assert new not in c.ports and new not in c.primaries()


def test_stop_leaves_no_process_and_frees_ports():
    c = LocalCluster(primaries=3, replicas=0).start()
    ports = list(c.ports)
    pids = [c._nodes[p].pid for p in ports]
    data_dir = c.data_dir
    c.pause(ports[0])  # stop() must cope with a stopped process too
    c.stop()
    c.stop()  # idempotent
    assert not any(pid_alive(pid) for pid in pids)
    assert not os.path.exists(data_dir)
    for p in ports:
        assert _port_bindable(p) and _port_bindable(p + 10000)


def test_existing_cluster_wrapper_is_read_only(cluster):
    ex = LocalCluster.existing(f"127.0.0.1:{cluster.primaries()[0]}")
    assert sorted(ex.ports) == sorted(cluster.ports)
    assert ex.primaries() == cluster.primaries()
    assert ex.slot_owner(0) == cluster.slot_owner(0)
    ex.wait_ok(timeout=10)
    with pytest.raises(RuntimeError):
        ex.kill(ex.ports[0])
    ex.stop()  # no-op
    assert all(cluster.is_running(p) for p in cluster.ports)
