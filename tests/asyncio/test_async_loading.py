"""A node answering LOADING (a real DEBUG RELOAD, see tests/loading.py), asyncio client: a
transaction backs off and retries until the load ends, as the sync client's does."""

from __future__ import annotations

import pytest
from loading import loading_case, reloading

from clusterpool.asyncio import ClusterClient

pytestmark = pytest.mark.asyncio


async def test_a_transaction_answered_loading_backs_off_and_runs_once_loaded(cluster):
    tag, key, owner, others = loading_case(cluster)
    client = ClusterClient(startup_nodes=others)  # no I/O until the node loads
    try:
        with reloading(cluster, owner, tag):  # returns once the node is loading (a short blocking wait)
            pipe = client.pipeline(transaction=True)
            pipe.set(key, "v")
            pipe.incr(key + "n")
            assert await pipe.execute() == [True, 1]
        assert await client.get(key) == b"v"
    finally:
        await client.delete(key, key + "n")
        await client.aclose()
