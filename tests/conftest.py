"""Shared pytest fixtures: a real local Redis Cluster (clusterpool.testing).

* ``cluster``        session-wide 3 primaries x 1 replica cluster (or an existing one when
                     ``CLUSTERPOOL_TEST_CLUSTER=host:port`` is set). Do not break it.
* ``fresh_cluster``  a private 3x1 cluster per test, for destructive tests
                     (kill / failover / migrations / add & remove nodes).
* ``startup_nodes``, ``cluster_url``  addresses of the session cluster.
* ``zoned``, ``zoned_keys``  a Valkey cluster with an availability zone per node, one per
                     test module (tests/valkey.py), and keys of each of its shards.
"""

from __future__ import annotations

import os

import pytest

from clusterpool.testing import LocalCluster

EXISTING_ENV = "CLUSTERPOOL_TEST_CLUSTER"
START_TIMEOUT = 60


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slow test (real processes, waits for timeouts)")
    config.addinivalue_line("markers", "chaos: kills / pauses / fails over cluster nodes")


# No test fails a node of the shared cluster, so its failure detection can only fire spuriously: on
# a loaded 2-core machine a node that misses the 2 s default for a moment gets failed over, and the
# next test meets CLUSTERDOWN. Its nodes wait longer before calling a peer dead.
SHARED_NODE_TIMEOUT_MS = 15000


def _new_cluster(node_timeout_ms: int = 2000) -> LocalCluster:
    return LocalCluster(primaries=3, replicas=1, node_timeout_ms=node_timeout_ms).start(timeout=START_TIMEOUT)


@pytest.fixture(scope="session")
def cluster():
    addr = os.environ.get(EXISTING_ENV)
    if addr:
        c = LocalCluster.existing(addr)
        c.wait_ok(timeout=30)
        yield c
        return
    c = _new_cluster(SHARED_NODE_TIMEOUT_MS)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def fresh_cluster():
    c = _new_cluster()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def startup_nodes(cluster):
    return cluster.startup_nodes


@pytest.fixture
def cluster_url(cluster):
    return cluster.url


@pytest.fixture(scope="module")
def zoned():
    from valkey import zoned_cluster

    c = zoned_cluster()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def zoned_keys(zoned):
    """{primary port: 10 keys it owns}."""
    from landing import keys_by_shard

    return keys_by_shard(zoned, 10)
