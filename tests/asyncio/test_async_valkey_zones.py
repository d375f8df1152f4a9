"""The asyncio client's zone affinity and bounded replica staleness on a real Valkey cluster with a
zone per node (tests/valkey.py); reads counted with each node's INFO commandstats."""

from __future__ import annotations

import pytest

from async_helpers import until
from clusterpool import AZ_AFFINITY
from clusterpool.asyncio import ClusterClient
from landing import Landing
from valkey import fill, get_calls, replica_in, require_valkey

require_valkey()

pytestmark = pytest.mark.asyncio

PER_SHARD = 10  # conftest.zoned_keys


def zone_client(cluster, **options):
    return ClusterClient(startup_nodes=cluster.startup_nodes, client_az="az-a", read_from=AZ_AFFINITY,
                         health_interval=0.1, **options)


async def learned_zones(client, cluster):
    await until(lambda: all(n.zone == cluster.zone(n.port) for n in client.topology().nodes), 20,
                what="zones learned")


async def test_reads_land_only_on_replicas_in_the_clients_zone(zoned, zoned_keys):
    async with zone_client(zoned) as c:
        await learned_zones(c, zoned)
        with Landing(zoned, "get") as landed:
            for ks in zoned_keys.values():
                for k in ks:
                    await c.get(k)
    local = [replica_in(zoned, p, "az-a") for p in zoned_keys]
    assert landed.on(local) == {r: PER_SHARD for r in local}
    assert sum(landed.delta.values()) == PER_SHARD * len(zoned_keys)


async def test_reads_move_to_another_zone_while_the_zone_replica_is_stopped(zoned, zoned_keys):
    primary = zoned.primaries()[1]
    local, other = replica_in(zoned, primary, "az-a"), replica_in(zoned, primary, "az-b")
    async with zone_client(zoned, failure_threshold=1, breaker_cooldown=60) as c:
        await learned_zones(c, zoned)
        before = get_calls(zoned, local)
        zoned.pause(local)
        try:
            await until(lambda: c.node_for(zoned_keys[primary][0], read=True).port != local, 20,
                        what="reads off the paused replica")
            with Landing(zoned, "get") as landed:
                for k in zoned_keys[primary]:
                    await c.get(k)
        finally:
            zoned.resume(local)
    assert landed.on([other]) == {other: PER_SHARD}
    assert get_calls(zoned, local) == before


async def test_a_replica_past_max_replica_lag_bytes_gets_no_reads_until_it_catches_up(zoned, zoned_keys):
    primary = zoned.primaries()[2]
    local = replica_in(zoned, primary, "az-a")
    name = f"{zoned.host}:{local}"
    changes: list = []
    async with zone_client(zoned, max_replica_lag_bytes=5000, failure_threshold=10**6) as c:
        c.on("node_health_changed", lambda e: changes.append((e.old, e.new)) if e.node == name else None)
        await learned_zones(c, zoned)
        before = get_calls(zoned, local)
        zoned.pause(local)
        try:
            fill(zoned, primary, zoned_keys[primary][0], 20)  # 20 kB it cannot acknowledge
            await until(lambda: any(new == "lagging" for _, new in changes), 20, what="the stopped replica to pass the bound")
            (lag,) = [n.lag for n in c.topology().nodes if n.name == name]
            assert lag.linked and lag.bytes > 5000  # topology() shows how far behind it is
            for k in zoned_keys[primary]:
                await c.get(k)
        finally:
            zoned.resume(local)
        assert get_calls(zoned, local) == before  # nothing was sent to it while it lagged
        await until(lambda: any(old == "lagging" for old, _ in changes), 20, what="the replica to catch up")
        with Landing(zoned, "get") as landed:
            for k in zoned_keys[primary]:
                await c.get(k)
        assert landed.on([local]) == {local: PER_SHARD}
