"""Optional Prometheus collector (`pip install clusterpool[prometheus]`).

    from prometheus_client import REGISTRY
    REGISTRY.register(PoolCollector(client))

Reads `client.stats()` at scrape time: gauges for pool size/in use/idle/waiting,
counters for connections created/closed, acquire timeouts, errors and
acquires, all labelled by node; plus refresh counters for the client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import ClusterClient

_GAUGES = (
    ("size", "connections open in the node's pool"),
    ("in_use", "connections lent out"),
    ("idle", "connections waiting in the pool"),
    ("waiting", "callers waiting for a connection"),
    ("max_connections", "the pool's bound"),
)
_COUNTERS = (
    ("created", "connections opened"),
    ("closed", "connections closed"),
    ("timeouts", "acquires that timed out (PoolTimeoutError)"),
    ("errors", "connection attempts that failed"),
    ("acquires", "connections acquired"),
)


class PoolCollector:
    """A prometheus_client collector for one client's pools."""

    def __init__(self, client: ClusterClient, prefix: str = "clusterpool") -> None:
        self.client = client
        self.prefix = prefix

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats = self.client.stats()
        for field, doc in _GAUGES:
            g = GaugeMetricFamily(f"{self.prefix}_pool_{field}", doc, labels=["node"])
            for p in stats.nodes:
                g.add_metric([p.node], getattr(p, field))
            yield g
        for field, doc in _COUNTERS:
            c = CounterMetricFamily(f"{self.prefix}_pool_{field}", doc, labels=["node"])
            for p in stats.nodes:
                c.add_metric([p.node], getattr(p, field))
            yield c
        w = CounterMetricFamily(f"{self.prefix}_pool_acquire_wait_seconds", "time spent waiting to acquire",
                                labels=["node"])
        for p in stats.nodes:
            w.add_metric([p.node], p.wait_time_total)
        yield w
        yield CounterMetricFamily(f"{self.prefix}_topology_refreshes", "slot map refreshes performed",
                                  value=stats.refreshes)
        yield GaugeMetricFamily(f"{self.prefix}_topology_version", "version of the slot map in use",
                                value=stats.topology_version)
