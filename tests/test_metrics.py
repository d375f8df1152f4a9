"""The Prometheus collector exposes every node's pool numbers in a parseable exposition."""

from __future__ import annotations

import pytest

from clusterpool import ClusterClient

prometheus_client = pytest.importorskip("prometheus_client")


@pytest.fixture
def client(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes) as c:
        yield c


def test_prometheus_output_parses_and_has_pool_metrics_per_node(client):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from clusterpool.metrics import PoolCollector

    for i in range(50):
        client.set(f"metrics:{i}", i)
    registry = CollectorRegistry()
    registry.register(PoolCollector(client))
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {"clusterpool_pool_size", "clusterpool_pool_in_use", "clusterpool_pool_idle",
            "clusterpool_pool_created", "clusterpool_pool_timeouts"} <= set(families)
    nodes = {s.labels["node"] for s in families["clusterpool_pool_size"].samples}
    assert nodes == {p.name for p in client.nodes(role="primary")} | (nodes - {p.name for p in client.nodes(role="primary")})
    assert {p.name for p in client.nodes(role="primary")} <= nodes
    assert sum(s.value for s in families["clusterpool_pool_acquires"].samples) >= 50


def test_prometheus_latency_histogram_with_track_latency(cluster):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from clusterpool.metrics import PoolCollector

    with ClusterClient(startup_nodes=cluster.startup_nodes, track_latency=True) as c:
        for i in range(40):
            c.get(f"metrics:{i}")
        registry = CollectorRegistry()
        registry.register(PoolCollector(c))
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    hist = families["clusterpool_command_seconds"]
    counts = [s.value for s in hist.samples if s.name.endswith("_count")]
    assert sum(counts) == 40
    assert all(s.labels["node"] for s in hist.samples)


def test_prometheus_has_the_client_side_cache_counters(cluster):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from clusterpool import CacheConfig, ClusterClient
    from clusterpool.metrics import PoolCollector
    from waiting import poll

    with ClusterClient(startup_nodes=cluster.startup_nodes, cache_config=CacheConfig()) as client:
        client.set("metrics:cached", "v")
        poll(lambda: client.get("metrics:cached") and client.stats().cache.hits > 0, 10, what="a cache hit")
        registry = CollectorRegistry()
        registry.register(PoolCollector(client))
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
        assert families["clusterpool_cache_hits"].samples[0].value >= 1
        assert families["clusterpool_cache_entries"].samples[0].value >= 1
        assert {"clusterpool_cache_misses", "clusterpool_cache_evictions", "clusterpool_cache_invalidations",
                "clusterpool_cache_flushes", "clusterpool_cache_bytes"} <= set(families)
