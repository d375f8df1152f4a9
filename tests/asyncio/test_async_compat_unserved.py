"""A slot nobody serves (issue 22), asyncio: after CLUSTER DELSLOTS on its owner, a command on it
raises ClusterDownError through redis.asyncio's RedisCluster and through ours alike, with
require_full_coverage=False. One private cluster for the module; times are printed (-s)."""

from __future__ import annotations

import time

import pytest
import pytest_asyncio
from deadline_cluster import slot_deleted_cluster
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError

from clusterpool.asyncio import ClusterClient

pytestmark = [pytest.mark.asyncio, pytest.mark.slow, pytest.mark.chaos]

KEY = "foo"
KINDS = ("redis.asyncio", "clusterpool")


@pytest.fixture(scope="module")
def unserved():
    yield from slot_deleted_cluster(KEY)


@pytest_asyncio.fixture(params=KINDS)
async def client(request, unserved):
    host, port = unserved.startup_nodes[0]
    cls = RedisCluster if request.param == "redis.asyncio" else ClusterClient
    c = cls(host=host, port=port, require_full_coverage=False)
    await c.get("{other}")  # the map is known before the slot is asked for
    yield c
    await c.aclose()


async def test_a_command_on_a_slot_nobody_serves_raises_cluster_down_error(client):
    start = time.monotonic()
    with pytest.raises(ClusterDownError):
        await client.exists(KEY)
    print(f"{type(client).__module__}: ClusterDownError after {time.monotonic() - start:.3f} s")
