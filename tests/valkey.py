"""A Valkey cluster with an availability zone on every node, for the zone and replica-lag tests.

3 primaries x 2 replicas: primaries in az-a, az-b, az-b; each shard has one replica in az-a and
one in az-b. cluster-node-timeout is 15 s so a replica paused for a few seconds is stopped
(no reads, its offset falls behind) without the cluster failing it. The tests SKIP only when
valkey-server is not installed (scripts/bootstrap.sh installs it).
"""

from __future__ import annotations

import pytest

from clusterpool.testing import LocalCluster, find_valkey_server
from waiting import poll

ZONES = ["az-a", "az-b", "az-b"] + ["az-a", "az-b"] * 3
NODE_TIMEOUT_MS = 15000


def require_valkey() -> None:
    """Skip the calling module when valkey-server is absent."""
    try:
        find_valkey_server()
    except RuntimeError as e:
        pytest.skip(f"Valkey tests need valkey-server 8.0+: {e}", allow_module_level=True)


def zoned_cluster() -> LocalCluster:
    """Started, and every replica online at its primary: before that a primary's INFO replication
    does not list it, so the client knows no lag for it yet (a test reading lag would race that)."""
    c = LocalCluster(primaries=3, replicas=2, server="valkey", zones=ZONES,
                     node_timeout_ms=NODE_TIMEOUT_MS).start(timeout=60)
    poll(lambda: all(_online_replicas(c, p) == len(c.replicas_of(p)) for p in c.primaries()), 30,
         what="every replica online at its primary")
    return c


def _online_replicas(cluster: LocalCluster, primary: int) -> int:
    with cluster.client(primary) as r:
        info = r.info("replication")
    return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
               and v.get("state") == "online")


def replica_in(cluster: LocalCluster, primary: int, zone: str) -> int:
    """The replica of `primary` in `zone`."""
    (port,) = [r for r in cluster.replicas_of(primary) if cluster.zone(r) == zone]
    return port


def get_calls(cluster: LocalCluster, port: int) -> int:
    """GETs served by one node so far (INFO commandstats)."""
    with cluster.client(port) as r:
        return int(r.info("commandstats").get("cmdstat_get", {}).get("calls", 0))


def fill(cluster: LocalCluster, primary: int, key_tag: str, count: int, size: int = 1000) -> None:
    """Write `count` values of `size` bytes to `primary` (the replication stream grows)."""
    with cluster.client(primary) as r:
        for i in range(count):
            r.set(f"{{{key_tag}}}:fill:{i}", "x" * size)
