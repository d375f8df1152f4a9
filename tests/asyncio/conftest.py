"""Fixtures of the asyncio tests: the session cluster is left as these tests found it, and `r`,
the one parametrized fixture of the drop-in tests (as tests/compat.py is for the sync ones)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio.cluster import RedisCluster

from async_helpers import drop_test_keys
from clusterpool.asyncio import ClusterClient

KINDS = ("redis.asyncio", "clusterpool")


@pytest_asyncio.fixture(params=KINDS)
async def r(request: pytest.FixtureRequest, cluster: Any) -> AsyncIterator[Any]:
    """The same scenario on redis.asyncio's RedisCluster and on ours (decode_responses=True,
    the map already known): a test taking `r` runs once with each."""
    host, port = cluster.startup_nodes[0]
    if request.param == "redis.asyncio":
        client: Any = RedisCluster(host=host, port=port, decode_responses=True)
    else:
        client = ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True)
    await client.initialize()
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def _clean_keys(request):
    yield
    if "cluster" in request.fixturenames:  # the session cluster: leave it as we found it
        drop_test_keys(request.getfixturevalue("cluster"))
