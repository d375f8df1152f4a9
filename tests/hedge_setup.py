"""A one-shard cluster with two replicas, one of them reached through a DelayProxy (a late node),
and a read strategy that always picks that late replica: the hedging tests' setting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from clusterpool.testing import LocalCluster
from delay_proxy import DelayProxy

LATE = 0.2  # the proxy's delay per chunk sent to the late replica (seconds)


@dataclass
class LateReplica:
    cluster: LocalCluster
    proxy: DelayProxy
    late: str  # the late replica's name as the client sees it (the proxy's address)
    fast: str  # the other replica

    def address_map(self, host: str, port: int) -> tuple[str, int]:
        """Route the late replica through the proxy (the `address_map=` option)."""
        replica = self.cluster.replicas()[0]
        return (host, self.proxy.port) if (host, port) == (self.cluster.host, replica) else (host, port)

    def pick_late(self, shard: Any, states: Any) -> Any:
        """A read strategy: the late replica whenever it is in the map."""
        return next((n for n in shard.readable if n.name == self.late), None)

    def options(self, **kw: Any) -> dict[str, Any]:
        return {"startup_nodes": self.cluster.startup_nodes, "address_map": self.address_map, **kw}


@contextmanager
def late_replica_cluster() -> Iterator[LateReplica]:
    """The cluster (1 primary, 2 replicas) and the proxy in front of its first replica."""
    c = LocalCluster(primaries=1, replicas=2).start(timeout=60)
    try:
        replicas = c.replicas()
        proxy = DelayProxy((c.host, replicas[0]), delay=LATE)
        try:
            yield LateReplica(c, proxy, f"{c.host}:{proxy.port}", f"{c.host}:{replicas[1]}")
        finally:
            proxy.close()
    finally:
        c.stop()


def pick(name: str) -> Any:
    """A read strategy that picks node `name` whenever it is in the map."""
    return lambda shard, states: next((n for n in shard.readable if n.name == name), None)
