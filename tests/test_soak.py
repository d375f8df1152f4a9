"""Many threads, a small pool, background maintenance: bounded soak runs against a real cluster."""

from __future__ import annotations

import random
import threading
import time

import pytest

from clusterpool import ClusterClient, PoolTimeoutError
from waiting import poll


def _hammer(client, stop, errors, counts, keys):
    rnd = random.Random()
    while not stop.is_set():
        k = rnd.choice(keys)
        try:
            if rnd.random() < 0.5:
                client.set(k, "v")
            else:
                client.get(k)
            counts[k] = counts.get(k, 0) + 1
        except Exception as e:  # noqa: BLE001 - collected and asserted on
            errors.append(e)


def test_pool_counters_stay_consistent_under_16_threads_with_eviction_and_health_checks(cluster):
    client = ClusterClient(startup_nodes=cluster.startup_nodes, max_connections=4, pool_timeout=10,
                           max_idle_time=0.05, health_interval=0.05, min_idle=1)
    stop, errors, counts = threading.Event(), [], {}
    keys = [f"soak:{i}" for i in range(500)]
    threads = [threading.Thread(target=_hammer, args=(client, stop, errors, counts, keys)) for _ in range(16)]
    bad_samples = []
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 15
        samples = 0
        while time.monotonic() < deadline:
            for p in client.stats().nodes:
                samples += 1
                if p.in_use + p.idle != p.size or p.size > p.max_connections or p.in_use < 0:
                    bad_samples.append(p)
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads), "a worker is stuck (deadlock?)"
    assert not errors, errors[:3]
    assert samples > 100 and not bad_samples, bad_samples[:3]
    assert sum(counts.values()) > 1000
    # the maintenance thread may hold one connection for a PING at any moment
    poll(lambda: client.stats().in_use == 0, what="every connection back in its pool")
    assert all(p.size <= 4 for p in client.stats().nodes)
    assert client.stats().acquire_timeouts == 0
    client.close()


def test_an_exhausted_pool_waits_and_is_not_taken_for_a_node_failure(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes, max_connections=1, pool_timeout=0.2) as client:
        client.set("exhaust:{1}", 1)
        node = client.node_for("exhaust:{1}")
        pool = client.core.state(node.name).pool
        refreshes, requests = client.stats().refreshes, client.stats().refresh_requests
        held = pool.acquire()
        try:
            for _ in range(3):
                with pytest.raises(PoolTimeoutError, match=node.name):
                    client.get("exhaust:{1}")
        finally:
            pool.release(held)
        assert client.get("exhaust:{1}") == b"1"
        st = client.stats()
        assert (st.refreshes, st.refresh_requests) == (refreshes, requests)
        assert client.core.health_of(node.name).value == "healthy"


def test_other_shards_carry_on_while_one_primary_is_briefly_unreachable(fresh_cluster):
    cluster = fresh_cluster
    with ClusterClient(startup_nodes=cluster.startup_nodes, max_connections=8) as client:
        victim = cluster.primaries()[0]
        keys = [f"brief:{i}" for i in range(600)]
        other = [k for k in keys if cluster.slot_owner(client.slot(k)) != victim]
        on_victim = [k for k in keys if k not in set(other)]
        stop, errors, counts = threading.Event(), [], {}
        # half the threads work on the shard that will pause, half on the others
        threads = [threading.Thread(target=_hammer, args=(client, stop, errors, counts, ks))
                   for ks in [on_victim] * 8 + [other] * 8]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)  # load established
            before = sum(counts.get(k, 0) for k in other)
            cluster.pause(victim)
            time.sleep(1.0)  # shorter than the node timeout: no failover, just an unreachable node
            during = sum(counts.get(k, 0) for k in other) - before
            cluster.resume(victim)
            time.sleep(0.5)
        finally:
            cluster.resume(victim)
            stop.set()
            for t in threads:
                t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert during > 100, "traffic to healthy shards stalled behind the paused one"
        assert not errors, errors[:3]
