"""The sync client for ACL users of the kinds managed services hand out (issue 28), on real clusters:
discovery uses what the user may run (CLUSTER SLOTS when SHARDS is denied, no epochs when NODES
is), the plain client, `reader`, pipelines and a refresh after a failover work, and a read-only
user's writes are refused by the server."""

from __future__ import annotations

import pytest
from acl_users import DENIED, KEYS, PREFIX, WRITERS, acl_user, denials, seed
from acl_users import row_fixture, seeded_fixture, user_fixture  # noqa: F401 - the fixtures row, user, seeded
from redis.exceptions import NoPermissionError

from clusterpool import ClusterClient
from waiting import poll


def client_for(cluster, user, **kw) -> ClusterClient:
    return ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True, **user, **kw)


def test_plain_client_reads(cluster, user, seeded):
    with client_for(cluster, user) as c:
        assert [c.get(k) for k in KEYS] == [seeded[k] for k in KEYS]


@pytest.mark.parametrize("row", WRITERS)
def test_plain_client_writes(cluster, user):
    with client_for(cluster, user) as c:
        for k in KEYS:
            assert c.set(k, "w")
        assert c.mget_nonatomic(list(KEYS)) == ["w"] * len(KEYS)


def test_reader_reads_from_replicas(cluster, user, seeded):
    with client_for(cluster, user) as c:
        reader = c.reader
        assert {reader.node_for(k, read=True).role for k in KEYS} == {"replica"}
        assert [reader.get(k) for k in KEYS] == [seeded[k] for k in KEYS]


def test_pipeline_reads(cluster, user, seeded):
    with client_for(cluster, user) as c:
        pipe = c.pipeline()
        for k in KEYS:
            pipe.get(k)
        assert pipe.execute() == [seeded[k] for k in KEYS]


@pytest.mark.parametrize("row", WRITERS)
def test_pipeline_writes(cluster, user):
    with client_for(cluster, user) as c:
        pipe = c.pipeline()
        for k in KEYS:
            pipe.set(k, "p")
        assert pipe.execute() == [True] * len(KEYS)
        assert c.mget_nonatomic(list(KEYS)) == ["p"] * len(KEYS)


@pytest.mark.parametrize("row", ["read_only"])
def test_read_only_user_writes_raise_no_permission(cluster, user):
    with client_for(cluster, user) as c, pytest.raises(NoPermissionError):
        c.set(KEYS[0], "nope")


@pytest.mark.parametrize("row", ["read_only"])
def test_read_only_user_pipeline_write_raises_no_permission(cluster, user):
    with client_for(cluster, user) as c:
        pipe = c.pipeline()
        pipe.set(KEYS[0], "nope")
        with pytest.raises(NoPermissionError):
            pipe.execute()


@pytest.mark.parametrize("row", ["prefix"])
def test_prefix_user_keys_outside_the_prefix_raise_no_permission(cluster, user):
    with client_for(cluster, user) as c, pytest.raises(NoPermissionError):
        c.get("not-" + PREFIX + "0")


@pytest.mark.parametrize("row", ["read_only"])
def test_health_probes_refused_by_the_acl_keep_nodes_healthy(cluster, user, seeded):
    with client_for(cluster, user, health_interval=0.05) as c:
        assert c.reader.get(KEYS[0]) == seeded[KEYS[0]]
        # every node's PING (primaries) or INFO (replicas) was refused, and measured as an answer
        poll(lambda: all(n.latency_ms is not None for n in c.topology().nodes), what="a probe of every node")
        assert {n.health for n in c.topology().nodes} == {"healthy"}
        assert [c.reader.get(k) for k in KEYS] == [seeded[k] for k in KEYS]


@pytest.mark.parametrize("row", ["no_map"])
def test_a_user_denied_both_map_commands_gets_no_permission_naming_them(cluster, user):
    with client_for(cluster, user) as c, pytest.raises(NoPermissionError, match="CLUSTER SHARDS nor CLUSTER SLOTS"):
        c.get(KEYS[0])


@pytest.mark.parametrize(("row", "command"), [(r, c) for r, cs in DENIED.items() for c in cs])
def test_a_denied_discovery_command_is_tried_at_most_once_per_node(cluster, user, command):
    with client_for(cluster, user) as c:
        for _ in range(5):
            assert c.refresh() is not None
    counts = denials(cluster, user["username"], command)
    assert sum(counts.values()) >= 1, counts  # the client did ask, once
    assert max(counts.values()) == 1, counts


def test_refresh_after_a_failover_finds_the_new_primary(fresh_cluster, row):
    cluster = fresh_cluster
    with acl_user(cluster, row) as user:
        values = seed(cluster)
        with client_for(cluster, user) as c:
            assert c.get(KEYS[0]) == values[KEYS[0]]
            replica = cluster.replicas_of(cluster.slot_owner(c.slot(KEYS[0])))[0]
            cluster.failover(replica)
            poll(lambda: c.refresh() and c.node_for(KEYS[0]).port == replica, what="the client to see the new primary")
            assert c.get(KEYS[0]) == values[KEYS[0]]
            if row in WRITERS:
                assert c.set(KEYS[0], "after")
            assert c.reader.get(KEYS[1]) == values[KEYS[1]]
