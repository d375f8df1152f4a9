"""Zone affinity and bounded replica staleness on a real Valkey cluster with a zone per node
(tests/valkey.py): where reads land is counted with each node's INFO commandstats."""

from __future__ import annotations

import json
import threading

from clusterpool import AZ_AFFINITY, AZ_AFFINITY_REPLICAS_AND_PRIMARY, ClusterClient
from clusterpool.cli import run as cli
from landing import Landing
from valkey import fill, get_calls, replica_in, require_valkey
from waiting import poll

require_valkey()

PER_SHARD = 10  # conftest.zoned_keys


def zone_client(cluster, **options):
    return ClusterClient(startup_nodes=cluster.startup_nodes, client_az="az-a", health_interval=0.1, **options)


def learned_zones(client, cluster):
    """Wait until the client knows every node's zone (the maintenance probe's INFO server)."""
    poll(lambda: all(n.zone == cluster.zone(n.port) for n in client.topology().nodes), 20, what="zones learned")


def health_changes(client, node):
    """A list that fills with (old, new) of each node_health_changed event of `node`."""
    changes: list = []
    client.on("node_health_changed", lambda e: changes.append((e.old, e.new)) if e.node == node else None)
    return changes


def test_topology_and_events_show_each_nodes_zone(zoned):
    told: dict = {}
    c = zone_client(zoned)
    c.on("node_zone", lambda e: told.__setitem__(e.node, e.zone))  # before the first probe
    with c:
        learned_zones(c, zoned)
        assert {n.port: n.zone for n in c.topology().nodes} == {p: zoned.zone(p) for p in zoned.ports}
        poll(lambda: len(told) == len(zoned.ports), 10, what="a node_zone event per node")
    assert told == {f"{zoned.host}:{p}": zoned.zone(p) for p in zoned.ports}


def test_cli_topology_shows_zones_and_replica_lag(zoned, capsys):
    """The CLI prints the map as it is at that moment: once the cluster's own views agree (every
    replica with its primary: Valkey spreads shard ids by gossip), every node with its zone, and
    every replica linked to its primary."""
    want = {p: zoned.zone(p) for p in zoned.ports}
    last = {"out": ""}

    def shown() -> bool:
        capsys.readouterr()
        assert cli(["--url", zoned.url, "--json", "topology"]) == 0
        last["out"] = out = capsys.readouterr().out
        shards = json.loads(out)["shards"]
        # a shard's primary is null when the map has none for it (failed, or a replica Valkey
        # still lists as a shard of its own): the test waits for the views to agree
        if any(s["primary"] is None for s in shards):
            return False
        nodes = [n for s in shards for n in [s["primary"], *s["replicas"]]]
        return ({n["port"]: n["zone"] for n in nodes} == want
                and all(n["lag"] and n["lag"]["linked"] for s in shards for n in s["replicas"]))

    try:
        poll(shown, 20, what="the CLI to show every node's zone and every replica's lag")
    except AssertionError as e:
        raise AssertionError(f"{e}; last output: {last['out']}") from None


def test_reads_land_only_on_replicas_in_the_clients_zone(zoned, zoned_keys):
    with zone_client(zoned, read_from=AZ_AFFINITY) as c:
        learned_zones(c, zoned)
        with Landing(zoned, "get") as landed:
            for ks in zoned_keys.values():
                for k in ks:
                    c.get(k)
    local = [replica_in(zoned, p, "az-a") for p in zoned_keys]
    assert landed.on(local) == {r: PER_SHARD for r in local}
    assert sum(landed.delta.values()) == PER_SHARD * len(zoned_keys)


def stopped_zone_replica_reads(zoned, zoned_keys, primary, read_from):
    """Pause `primary`'s az-a replica; once the client keeps reads off it, read the shard's keys:
    {port: GETs served}, the paused replica's counted after it resumes."""
    local = replica_in(zoned, primary, "az-a")
    with zone_client(zoned, read_from=read_from, failure_threshold=1, breaker_cooldown=60) as c:
        learned_zones(c, zoned)
        before = get_calls(zoned, local)
        zoned.pause(local)
        try:
            poll(lambda: c.node_for(zoned_keys[primary][0], read=True).port != local, 20, what="reads off the paused replica")
            with Landing(zoned, "get") as landed:
                for k in zoned_keys[primary]:
                    c.get(k)
        finally:
            zoned.resume(local)
    return {**{p: n for p, n in landed.delta.items() if n}, local: get_calls(zoned, local) - before}


def test_reads_move_to_another_zone_while_the_zone_replica_is_stopped(zoned, zoned_keys):
    primary = zoned.primaries()[1]  # its primary is in az-b
    landed = stopped_zone_replica_reads(zoned, zoned_keys, primary, AZ_AFFINITY)
    assert landed == {replica_in(zoned, primary, "az-b"): PER_SHARD, replica_in(zoned, primary, "az-a"): 0}


def test_replicas_and_primary_variant_moves_to_the_primary_in_the_zone(zoned, zoned_keys):
    primary = zoned.primaries()[0]  # in az-a
    landed = stopped_zone_replica_reads(zoned, zoned_keys, primary, AZ_AFFINITY_REPLICAS_AND_PRIMARY)
    assert landed == {primary: PER_SHARD, replica_in(zoned, primary, "az-a"): 0}


def test_a_replica_past_max_replica_lag_gets_no_reads_until_it_catches_up(zoned, zoned_keys):
    primary = zoned.primaries()[2]
    local = replica_in(zoned, primary, "az-a")
    tag = zoned_keys[primary][0]
    stop = threading.Event()

    def writer():  # writes continue while the replica is stopped
        while not stop.wait(0.02):
            fill(zoned, primary, tag, 1, 100)

    with zone_client(zoned, read_from=AZ_AFFINITY, max_replica_lag=2, failure_threshold=10**6) as c:
        learned_zones(c, zoned)
        changes = health_changes(c, f"{zoned.host}:{local}")
        before = get_calls(zoned, local)
        t = threading.Thread(target=writer)
        t.start()
        zoned.pause(local)
        try:
            poll(lambda: any(new == "lagging" for _, new in changes), 20, what="the stopped replica to pass max_replica_lag")
            for k in zoned_keys[primary]:
                c.get(k)
        finally:
            stop.set()
            t.join()
            zoned.resume(local)
        assert get_calls(zoned, local) == before  # nothing was sent to it while it lagged
        poll(lambda: any(old == "lagging" for old, _ in changes), 20, what="the replica to catch up")
        with Landing(zoned, "get") as landed:
            for k in zoned_keys[primary]:
                c.get(k)
        assert landed.on([local]) == {local: PER_SHARD}
