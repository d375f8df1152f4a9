"""Pool lifecycle, health and tracing against a real cluster."""

from __future__ import annotations

import threading

import pytest
import redis

from clusterpool import ClusterClient, Health
from waiting import poll
from waiting import poll as wait_until


def get_calls(cluster, port):
    r = cluster.client(port)
    try:
        return int(r.info("commandstats").get("cmdstat_get", {}).get("calls", 0))
    finally:
        r.close()


def test_min_idle_connections_are_open_before_the_first_command(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes, min_idle=2) as client:
        client.connect()
        per_node = {p.node: p for p in client.stats().nodes}
        assert set(per_node) == {n.name for n in client.nodes()}
        assert all(p.idle >= 2 and p.in_use == 0 for p in per_node.values())


def test_idle_connections_are_evicted_after_max_idle_time(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes, max_idle_time=0.2, health_interval=0.1) as client:
        errors: list[BaseException] = []

        def work(i):
            try:
                for j in range(50):
                    client.set(f"evict:{i}:{j}", j)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert client.stats().total_connections > len(client.nodes(role="primary"))
        # only the maintenance thread's own PING connection may stay per node
        assert wait_until(lambda: all(p.idle <= 1 for p in client.stats().nodes))
        assert all(p.closed > 0 for p in client.stats().nodes if p.created > 1)


def test_paused_primary_opens_its_breaker_and_reads_move_to_a_replica(fresh_cluster):
    cluster = fresh_cluster
    client = ClusterClient(startup_nodes=cluster.startup_nodes, socket_timeout=0.3,
                           failure_threshold=2, breaker_cooldown=30, health_interval=0.2)
    try:
        client.set("paused:{a}", "v")
        primary = client.node_for("paused:{a}")
        replica = cluster.replicas_of(primary.port)[0]
        raw = cluster.client(replica)
        raw.execute_command("READONLY")
        assert wait_until(lambda: raw.get("paused:{a}") == "v")
        raw.close()
        before = get_calls(cluster, replica)
        cluster.pause(primary.port)
        try:
            assert wait_until(lambda: client.core.health_of(primary.name) is Health.UNHEALTHY, timeout=10)
            values = [client.get("paused:{a}") for _ in range(20)]
        finally:
            cluster.resume(primary.port)
        assert values == [b"v"] * 20
        assert get_calls(cluster, replica) >= before + 20
    finally:
        client.close()


def test_command_hook_sees_every_command_and_latency_is_tracked(cluster):
    seen: list[tuple[str, str, float, object]] = []
    with ClusterClient(startup_nodes=cluster.startup_nodes, track_latency=True,
                       command_hook=lambda *a: seen.append(a)) as client:
        for i in range(30):
            client.set(f"hook:{i}", i)
        with pytest.raises(redis.exceptions.ResponseError):
            client.lpush("hook:0", 1)
        assert [c for _, c, _, _ in seen].count("SET") == 30
        assert isinstance(seen[-1][3], redis.exceptions.ResponseError)
        lat = client.stats().latency
        assert sum(v["count"] for v in lat.values()) == 31
        assert all(v["p50_ms"] <= v["p99_ms"] <= v["max_ms"] for v in lat.values())


def test_a_hook_that_raises_does_not_fail_commands(cluster):
    def bad_hook(*_):
        raise RuntimeError("tracing bug")

    with ClusterClient(startup_nodes=cluster.startup_nodes, command_hook=bad_hook, track_latency=True) as client:
        assert client.set("hook:bad", 1) is True
        assert client.reader.get("hook:bad") in (b"1", None)


def test_connections_closed_by_the_server_idle_timeout_are_replaced_without_errors(fresh_cluster):
    cluster = fresh_cluster
    with ClusterClient(startup_nodes=cluster.startup_nodes, health_interval=3600) as client:
        for i in range(20):
            client.incr(f"idle:{i}")
        for port in cluster.ports:
            r = cluster.client(port)
            r.config_set("timeout", 1)
            r.close()
        try:
            # wait until the server has closed our idle connections (CLIENT LIST shrinks)
            def ours_gone():
                for port in cluster.primaries():
                    r = cluster.client(port)
                    try:
                        if any(c.get("cmd") == "incr" for c in r.client_list()):
                            return False
                    finally:
                        r.close()
                return True

            assert wait_until(ours_gone, timeout=15)
            # writes (not safely retryable) must not hit the dead sockets
            assert [client.incr(f"idle:{i}") for i in range(20)] == [2] * 20
        finally:
            for port in cluster.ports:
                r = cluster.client(port)
                r.config_set("timeout", 0)
                r.close()


def test_recommend_pool_size_uses_the_clients_own_numbers(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes, track_latency=True) as client:
        for i in range(200):
            client.set(f"size:{i}", i)
        rec = client.recommend_pool_size()
        assert rec.rate > 0 and rec.latency_ms > 0
        assert rec.nodes == len(client.nodes(role="primary"))
        assert rec.per_node >= 1


def test_validate_on_return_drops_a_connection_closed_by_the_server(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes, validate_on_return=True, health_interval=3600) as client:
        client.set("vor:{1}", 1)
        node = client.node_for("vor:{1}")
        pool = client.core.state(node.name).pool
        conn = pool.acquire()
        r = cluster.client(node.port)
        try:
            conn.send_command("CLIENT", "ID")
            my_id = conn.read_response()
            r.execute_command("CLIENT", "KILL", "ID", my_id)
            poll(lambda: not any(int(c["id"]) == my_id for c in r.client_list()), what="connection killed")
        finally:
            r.close()
        closed_before = pool.stats().closed
        pool.release(conn)
        assert pool.stats().closed == closed_before + 1
        assert client.get("vor:{1}") == b"1"


def test_a_replica_kept_off_reads_comes_back_after_a_good_health_check(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes, health_interval=3600) as client:
        key = "back:{1}"
        replica = client.reader.node_for(key, read=True)
        assert replica.role == "replica"
        assert client.reader.get(key) is None  # the replica has served a read: its state exists
        client.core.node_loading(replica.name)  # as after a LOADING reply or a replica's MOVED
        assert client.reader.node_for(key, read=True).name != replica.name
        client.core.maintain_once()  # the background health pass, run here so the test is deterministic
        assert client.reader.node_for(key, read=True).name == replica.name
