"""A node answering LOADING (a real DEBUG RELOAD, see loading.py): every path backs off and
retries until the load ends, as for TRYAGAIN; nothing ends as "unknown outcome" because
redis-py makes BusyLoadingError a ConnectionError."""

from __future__ import annotations

import uuid

from loading import reloading

from clusterpool import ClusterClient
from clusterpool.slots import key_slot


def test_a_transaction_answered_loading_backs_off_and_runs_once_loaded(cluster):
    tag = "loading-" + uuid.uuid4().hex[:8]
    key = "{" + tag + "}:k"
    owner = cluster.slot_owner(key_slot(key.encode()))
    others = [(cluster.host, p) for p in cluster.primaries() if p != owner]
    # no I/O until the node loads: its connection to the node is opened then, as after a restart
    # (a DEBUG RELOAD leaves connections opened before it unanswered until the load ends)
    client = ClusterClient(startup_nodes=others)
    try:
        with reloading(cluster, owner, tag):
            pipe = client.pipeline(transaction=True)
            pipe.set(key, "v")
            pipe.incr(key + "n")
            assert pipe.execute() == [b"OK", 1]  # unparsed, as RedisCluster's: each ran once
        assert client.get(key) == b"v"
    finally:
        client.delete(key, key + "n")
        client.close()
