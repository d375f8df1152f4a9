"""Refresh behaviour against real clusters: lost nodes, replaced clusters, failed nodes."""

from __future__ import annotations


from clusterpool.testing import LocalCluster
from clusterpool import ClusterClient
from delay_proxy import DelayProxy
from waiting import poll as eventually


def test_all_nodes_replaced_behind_a_stable_startup_address_is_followed(fresh_cluster):
    old = fresh_cluster
    stable = DelayProxy((old.host, old.ports[0]), delay=0)  # the "DNS name" users configure
    new = LocalCluster(primaries=3, replicas=1)
    client = ClusterClient(startup_nodes=[("127.0.0.1", stable.port)], refresh_interval=0.5,
                           socket_timeout=1, socket_connect_timeout=0.5)
    try:
        client.set("moved:{1}", "old")
        old_ports = {n.port for n in client.nodes()}
        assert old_ports == set(old.ports)
        new.start()
        stable.target = (new.host, new.ports[0])
        old.stop()
        assert eventually(lambda: client.set("moved:{1}", "new")) is True
        assert client.get("moved:{1}") == b"new"
        assert {n.port for n in client.nodes()} == set(new.ports)
    finally:
        client.close()
        stable.close()
        new.stop()


def test_a_killed_replica_is_dropped_from_reads_once_the_cluster_marks_it_failed(fresh_cluster):
    cluster = fresh_cluster
    with ClusterClient(startup_nodes=cluster.startup_nodes, refresh_interval=0.5) as client:
        client.connect()
        victim = cluster.replicas()[0]
        cluster.kill(victim)

        def failed_in_map():
            client.refresh()
            node = client.core.topology.by_name.get(f"{cluster.host}:{victim}")
            assert node is not None and not node.usable
            return True

        assert eventually(failed_in_map)
        reads = {client.reader.node_for(f"k{i}", read=True).port for i in range(300)}
        assert victim not in reads
