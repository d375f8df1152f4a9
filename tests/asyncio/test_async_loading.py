"""A node answering LOADING (a real DEBUG RELOAD, see tests/loading.py), asyncio client: a
transaction backs off and retries until the load ends, as the sync client's does."""

from __future__ import annotations

import uuid

import pytest
from loading import reloading

from clusterpool.asyncio import ClusterClient
from clusterpool.slots import key_slot

pytestmark = pytest.mark.asyncio


async def test_a_transaction_answered_loading_backs_off_and_runs_once_loaded(cluster):
    tag = "loading-" + uuid.uuid4().hex[:8]
    key = "{" + tag + "}:k"
    owner = cluster.slot_owner(key_slot(key.encode()))
    others = [(cluster.host, p) for p in cluster.primaries() if p != owner]
    # no I/O until the node loads: its connection to the node is opened then, as after a restart
    # (a DEBUG RELOAD leaves connections opened before it unanswered until the load ends)
    client = ClusterClient(startup_nodes=others)
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
