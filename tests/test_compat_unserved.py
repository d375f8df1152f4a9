"""A slot nobody serves (issue 22): after CLUSTER DELSLOTS on its owner, a command on it raises
ClusterDownError through RedisCluster and through ClusterClient alike (ours: SlotNotCoveredError,
which is one), with require_full_coverage=False. One private cluster for the module; the time
each client took is printed (-s): ours gives up well before RedisCluster's 6-7 s."""

from __future__ import annotations

import time

import pytest
from compat import KINDS, REDIS_CLUSTER
from deadline_cluster import slot_deleted_cluster
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError

from clusterpool import ClusterClient

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

KEY = "foo"


@pytest.fixture(scope="module")
def unserved():
    yield from slot_deleted_cluster(KEY)


@pytest.mark.parametrize("kind", KINDS)
def test_a_command_on_a_slot_nobody_serves_raises_cluster_down_error(unserved, kind):
    host, port = unserved.startup_nodes[0]
    cls = RedisCluster if kind == REDIS_CLUSTER else ClusterClient
    client = cls(host=host, port=port, require_full_coverage=False)
    try:
        client.get("{other}")  # the map is known before the slot is asked for
        start = time.monotonic()
        with pytest.raises(ClusterDownError):
            client.exists(KEY)
        print(f"{kind}: ClusterDownError after {time.monotonic() - start:.3f} s")
    finally:
        client.close()
