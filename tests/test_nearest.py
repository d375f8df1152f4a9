"""NEAREST reads avoid a node made slow on purpose (a delaying proxy reached through address_map)."""

from __future__ import annotations


from clusterpool import ClusterClient
from delay_proxy import DelayProxy
from waiting import poll as wait_until


def test_nearest_prefers_the_fast_node_over_one_behind_a_slow_proxy(cluster):
    host = cluster.host
    slow_replica = cluster.replicas()[0]
    primary = cluster.primary_of(slow_replica)
    proxy = DelayProxy((host, slow_replica), delay=0.02)
    slow_name = f"{host}:{slow_replica}"

    def through_proxy(h, p):
        return (h, proxy.port) if (h, p) == (host, slow_replica) else (h, p)

    client = ClusterClient(startup_nodes=cluster.startup_nodes, address_map=through_proxy,
                           read_from="nearest", health_interval=0.1)
    try:
        key = next(f"near:{i}" for i in range(10000) if cluster.slot_owner(client.slot(f"near:{i}")) == primary)
        client.set(key, "v")
        proxied = f"{host}:{proxy.port}"
        assert wait_until(lambda: {n.name: n.latency_ms for n in client.topology().nodes}.get(proxied) is not None
                          and client.topology() is not None)
        lat = {n.name: n.latency_ms for n in client.topology().nodes}
        assert lat[proxied] > lat[f"{host}:{primary}"]
        picks = [client.node_for(key, read=True).name for _ in range(200)]
        assert picks.count(proxied) == 0
        assert set(picks) == {f"{host}:{primary}"}
        assert client.get(key) == b"v"
        assert slow_name not in {n.name for n in client.nodes()}  # the map holds the reachable address
    finally:
        client.close()
        proxy.close()
