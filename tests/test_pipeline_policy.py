"""Pipelines follow the same failure policy as single commands (policy.decide), against real
clusters: each test is one of the ways the two paths used to disagree."""

from __future__ import annotations

import threading

from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.retry import Retry

from clusterpool import ClusterClient, NodeUnavailableError, TooManyRedirectionsError
from clusterpool.slots import slot_of
from waiting import poll


def key_on(cluster, port, prefix="pp"):
    """A key whose slot the node at `port` serves."""
    mine = set(cluster.slots_of(port))
    return next(k for k in (f"{prefix}:{i}" for i in range(100000)) if slot_of(k) in mine)


def acquires(client, port):
    return sum(p.acquires for p in client.stats().nodes if p.node.endswith(f":{port}"))


def test_a_pipeline_takes_no_connection_from_a_node_whose_breaker_is_open(fresh_cluster):
    c = fresh_cluster
    victim = c.primaries()[0]
    k = key_on(c, victim)
    with ClusterClient(startup_nodes=c.startup_nodes, failure_threshold=1, breaker_cooldown=60,
                       retry=Retry(NoBackoff(), 0), refresh_interval=3600) as client:
        client.set(k, "v")
        c.kill(victim)
        poll(lambda: _fails(client, k), 10, what="the breaker of the killed primary to open")
        before = acquires(client, victim)
        pipe = client.pipeline()
        pipe.get(k)
        (result,) = pipe.execute(raise_on_error=False)
        assert acquires(client, victim) == before
        assert isinstance(result, NodeUnavailableError) or result == b"v"  # or the map moved on already


def _fails(client, k):
    try:
        client.get(k)
    except Exception:  # noqa: BLE001 - any failure opens a breaker with threshold 1
        return any(n.health == "unhealthy" for n in client.topology().nodes)
    return False


def test_a_pipeline_rides_out_a_failover_within_retry_timeout(fresh_cluster):
    """A count of one retry would give up long before the promotion; retry_timeout=30 does not."""
    c = fresh_cluster
    victim = c.primaries()[0]
    k = key_on(c, victim)
    # replica_fallback=False: the GET waits for the new primary too, instead of reading the
    # replica (which does not have the pipeline's own SET yet) while the primary is down
    with ClusterClient(startup_nodes=c.startup_nodes, retry=Retry(EqualJitterBackoff(cap=0.2, base=0.05), 1),
                       retry_timeout=30, replica_fallback=False) as client:
        client.set(k, "before")
        c.kill(victim)
        pipe = client.pipeline()
        pipe.set(k, "after")
        pipe.get(k)
        assert pipe.execute() == [True, b"after"]
        assert client.node_for(k).port != victim


def test_moved_from_a_replica_keeps_pipeline_reads_off_that_replica(fresh_cluster):
    c = fresh_cluster
    src, dst = c.primaries()[:2]
    moved, other = key_on(c, src, "moved"), None
    slots = set(c.slots_of(src)) - {slot_of(moved)}
    other = next(k for k in (f"other:{i}" for i in range(100000)) if slot_of(k) in slots)
    with ClusterClient(startup_nodes=c.startup_nodes, refresh_interval=3600, health_interval=3600) as client:
        reader = client.reader
        client.set(moved, "m")
        poll(lambda: reader.get(moved) == b"m", 10, what="the replica to have the key")
        assert reader.node_for(other, read=True).port in c.replicas_of(src)
        c.move_slot(slot_of(moved), dst)  # the client's map is stale now: its replica answers MOVED
        pipe = reader.pipeline()
        pipe.get(moved)
        assert pipe.execute() == [b"m"]
        assert reader.node_for(other, read=True).port == src  # the replica is kept off reads


def test_clusterdown_on_the_pipeline_path_asks_for_a_new_map(fresh_cluster):
    c = fresh_cluster
    k = key_on(c, c.primaries()[0])
    # no periodic refresh, no CLUSTER INFO watch (health_interval): the pipeline's reply asks for the map
    with ClusterClient(startup_nodes=c.startup_nodes, max_redirections=1, refresh_interval=3600,
                       health_interval=3600) as client:
        client.set(k, "v")
        for port in c.ports:
            c.client(port).execute_command("CLUSTER", "DELSLOTS", slot_of(k))
        before = client.stats().refresh_requests
        pipe = client.pipeline()
        pipe.get(k)
        (result,) = pipe.execute(raise_on_error=False)
        assert isinstance(result, TooManyRedirectionsError) and "not served" in str(result)
        assert client.stats().refresh_requests > before


def test_a_pipeline_on_killed_pooled_connections_reconnects_without_errors(fresh_cluster):
    """CLIENT KILL closes every pooled connection: reads retry once on a fresh connection, writes
    find the dead socket before sending, and no node's breaker hears of it."""
    c = fresh_cluster
    keys = [f"kill:{i}" for i in range(200)]
    with ClusterClient(startup_nodes=c.startup_nodes) as client:
        health = []
        client.on("node_health_changed", health.append)
        pipe = client.pipeline()
        for k in keys:
            pipe.set(k, k)
        pipe.execute()
        for port in c.ports:
            c.client(port).execute_command("CLIENT", "KILL", "TYPE", "normal")
        pipe = client.pipeline()
        for k in keys:
            pipe.get(k)
            pipe.set(k, k + "!")
        results = pipe.execute()
        assert results[0::2] == [k.encode() for k in keys] and all(results[1::2])
        assert health == []


def test_a_pipeline_that_succeeds_after_failures_restores_the_node_health(fresh_cluster):
    c = fresh_cluster
    victim = c.primaries()[0]
    k = key_on(c, victim)
    with ClusterClient(startup_nodes=c.startup_nodes, socket_timeout=0.3, failure_threshold=50,
                       refresh_interval=3600, health_interval=3600) as client:
        client.set(k, "v")
        c.pause(victim)
        resumed = threading.Timer(1.0, c.resume, (victim,))
        resumed.start()
        try:
            pipe = client.pipeline()
            pipe.get(k)  # read-only: retried after each timeout until the node answers again
            assert pipe.execute() == [b"v"]
        finally:
            resumed.join()
        node = next(n for n in client.topology().nodes if n.port == victim)
        assert node.health == "healthy"


def test_a_transaction_rides_out_a_failover_within_retry_timeout(fresh_cluster):
    """MULTI/EXEC that could not be sent (its primary is dead) waits for the promotion, as a
    single command does, instead of failing at once."""
    c = fresh_cluster
    victim = c.primaries()[0]
    k = key_on(c, victim, "tx")
    with ClusterClient(startup_nodes=c.startup_nodes, retry=Retry(EqualJitterBackoff(cap=0.2, base=0.05), 1),
                       retry_timeout=30) as client:
        client.set(k, "before")
        c.kill(victim)
        pipe = client.pipeline(transaction=True)
        pipe.set(k, "after")
        pipe.get(k)
        assert pipe.execute() == [b"OK", b"after"]
        assert client.node_for(k).port != victim
