"""A node answering LOADING (a real DEBUG RELOAD, see loading.py): every path backs off and
retries until the load ends, as for TRYAGAIN; nothing ends as "unknown outcome" because
redis-py makes BusyLoadingError a ConnectionError."""

from __future__ import annotations

from loading import loading_case, reloading

from clusterpool import ClusterClient


def test_a_transaction_answered_loading_backs_off_and_runs_once_loaded(cluster):
    tag, key, owner, others = loading_case(cluster)
    client = ClusterClient(startup_nodes=others)  # no I/O until the node loads
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
