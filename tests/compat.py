"""Two clients on one cluster: redis-py's RedisCluster and clusterpool's ClusterClient.

`client` is the one parametrized fixture: every test that takes it runs once
with each client, asserting the same replies and exception classes (an error
class of redis-py's RedisCluster matches when ours is it or a subclass of it).
Tests whose replies depend on the cluster's state take `both` instead and
compare the two in the same test. `key` is a per-test, per-client prefix with
a hash tag, so tests never collide. Import the fixtures into a test module
with `from compat import both, client, client_kind, key  # noqa: F401`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from clusterpool import ClusterClient
from waiting import poll

# The installed redis-py's (major, minor): a reference behaviour new in a version is compared from it on.
REDIS_PY = tuple(int(x) for x in redis.__version__.split(".")[:2])

REDIS_CLUSTER = "RedisCluster"
CLUSTER_CLIENT = "ClusterClient"
KINDS = (REDIS_CLUSTER, CLUSTER_CLIENT)


_settled: set[int] = set()


def settle(cluster: Any) -> None:
    """Once per cluster: write to every shard, then wait until RedisCluster sees every replica.

    Redis 7.0's CLUSTER SLOTS (what RedisCluster reads) leaves out replicas whose replication
    offset is still 0, so before the first write RedisCluster would know only the primaries."""
    if id(cluster) in _settled:
        return
    for port in cluster.primaries():
        r = cluster.client(port)
        try:
            r.set(_key_in_slot(cluster.slots_of(port)[0]), "settle")
        finally:
            r.close()

    def sees_all() -> bool:
        rc = RedisCluster(*cluster.startup_nodes[0])
        try:
            return len(rc.get_replicas()) == len(cluster.replicas())
        finally:
            rc.close()

    poll(sees_all, timeout=30, what="RedisCluster to see every replica")
    _settled.add(id(cluster))


def _key_in_slot(slot: int) -> str:
    from clusterpool.slots import slot_of

    i = 0
    while slot_of(f"compat-settle:{i}") != slot:
        i += 1
    return f"compat-settle:{i}"


def client_class(kind: str) -> Any:
    return RedisCluster if kind == REDIS_CLUSTER else ClusterClient


def make_client(kind: str, cluster: Any, **kwargs: Any) -> Any:
    """A RedisCluster or a ClusterClient on `cluster`'s first startup node."""
    settle(cluster)
    host, port = cluster.startup_nodes[0]
    if kind == REDIS_CLUSTER:
        return RedisCluster(host=host, port=port, **kwargs)
    return ClusterClient(host, port, **kwargs)


@pytest.fixture(params=KINDS)
def client_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(client_kind: str, cluster: Any) -> Iterator[Any]:
    """Each test runs twice: with redis-py's RedisCluster and with ClusterClient."""
    c = make_client(client_kind, cluster)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def both(cluster: Any) -> Iterator[tuple[Any, Any]]:
    """(RedisCluster, ClusterClient) on the same cluster, for replies that depend on its state."""
    rc = make_client(REDIS_CLUSTER, cluster)
    cp = make_client(CLUSTER_CLIENT, cluster)
    try:
        yield rc, cp
    finally:
        rc.close()
        cp.close()


@pytest.fixture
def key() -> str:
    """A prefix of keys in one slot, unique to this test and client: "{compat-<id>}:"."""
    return "{compat-" + uuid.uuid4().hex[:12] + "}:"


def spread(prefix: str) -> str:
    """The same unique prefix without its hash tag: keys made from it spread over the slots."""
    return prefix.replace("{", "").replace("}", "")


def outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """("ok", reply) or ("error", exception class): what a caller of `fn` sees."""
    try:
        return "ok", fn(*args, **kwargs)
    except Exception as e:  # the class is what is compared
        return "error", type(e)


def same_outcome(rc_fn: Any, cp_fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """Run the same call on both clients; assert equal replies, or ours raising RedisCluster's class."""
    want = outcome(rc_fn, *args, **kwargs)
    got = outcome(cp_fn, *args, **kwargs)
    if want[0] == "error" and got[0] == "error":
        assert issubclass(got[1], want[1]), (got, want)
    else:
        assert got == want
    return want, got
