"""The asyncio client for ACL users of the kinds managed services hand out (issue 28), on real
clusters: discovery uses what the user may run (CLUSTER SLOTS when SHARDS is denied, no epochs when
NODES is), the plain client, `reader`, pipelines and a refresh after a failover work, and a
read-only user's writes are refused by the server."""

from __future__ import annotations

import asyncio

import pytest
from acl_users import DENIED, KEYS, PREFIX, WRITERS, acl_user, denials, seed
from acl_users import row_fixture, seeded_fixture, user_fixture  # noqa: F401 - the fixtures row, user, seeded
from async_helpers import until
from redis.exceptions import NoPermissionError

from clusterpool.asyncio import ClusterClient

pytestmark = pytest.mark.asyncio


def client_for(cluster, user, **kw) -> ClusterClient:
    return ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True, **user, **kw)


async def read_all(c) -> list[str]:
    return list(await asyncio.gather(*(c.get(k) for k in KEYS)))


async def test_plain_client_reads(cluster, user, seeded):
    async with client_for(cluster, user) as c:
        assert await read_all(c) == [seeded[k] for k in KEYS]


@pytest.mark.parametrize("row", WRITERS)
async def test_plain_client_writes(cluster, user):
    async with client_for(cluster, user) as c:
        assert await asyncio.gather(*(c.set(k, "w") for k in KEYS)) == [True] * len(KEYS)
        assert await read_all(c) == ["w"] * len(KEYS)


async def test_reader_reads_from_replicas(cluster, user, seeded):
    async with client_for(cluster, user) as c:
        reader = c.reader
        assert await reader.get(KEYS[0]) == seeded[KEYS[0]]  # discovers the cluster
        assert {reader.node_for(k, read=True).role for k in KEYS} == {"replica"}
        assert await read_all(reader) == [seeded[k] for k in KEYS]


async def test_pipeline_reads(cluster, user, seeded):
    async with client_for(cluster, user) as c:
        pipe = c.pipeline()
        for k in KEYS:
            pipe.get(k)
        assert await pipe.execute() == [seeded[k] for k in KEYS]


@pytest.mark.parametrize("row", WRITERS)
async def test_pipeline_writes(cluster, user):
    async with client_for(cluster, user) as c:
        pipe = c.pipeline()
        for k in KEYS:
            pipe.set(k, "p")
        assert await pipe.execute() == [True] * len(KEYS)
        assert await read_all(c) == ["p"] * len(KEYS)


@pytest.mark.parametrize("row", ["read_only"])
async def test_read_only_user_writes_raise_no_permission(cluster, user):
    async with client_for(cluster, user) as c:
        with pytest.raises(NoPermissionError):
            await c.set(KEYS[0], "nope")


@pytest.mark.parametrize("row", ["read_only"])
async def test_read_only_user_pipeline_write_raises_no_permission(cluster, user):
    async with client_for(cluster, user) as c:
        with pytest.raises(NoPermissionError):
            await c.pipeline().set(KEYS[0], "nope").execute()


@pytest.mark.parametrize("row", ["prefix"])
async def test_prefix_user_keys_outside_the_prefix_raise_no_permission(cluster, user):
    async with client_for(cluster, user) as c:
        with pytest.raises(NoPermissionError):
            await c.get("not-" + PREFIX + "0")


@pytest.mark.parametrize("row", ["no_map"])
async def test_a_user_denied_both_map_commands_gets_no_permission_naming_them(cluster, user):
    c = client_for(cluster, user)
    try:
        with pytest.raises(NoPermissionError, match="CLUSTER SHARDS nor CLUSTER SLOTS"):
            await c.get(KEYS[0])  # discovery, as `async with` would run it
    finally:
        await c.aclose()


@pytest.mark.parametrize(("row", "command"), [(r, c) for r, cs in DENIED.items() for c in cs])
async def test_a_denied_discovery_command_is_tried_at_most_once_per_node(cluster, user, command):
    async with client_for(cluster, user) as c:
        for _ in range(5):
            assert await c.refresh() is not None
    counts = denials(cluster, user["username"], command)
    assert sum(counts.values()) >= 1, counts  # the client did ask, once
    assert max(counts.values()) == 1, counts


async def test_refresh_after_a_failover_finds_the_new_primary(fresh_cluster, row):
    cluster = fresh_cluster
    with acl_user(cluster, row) as user:
        values = seed(cluster)
        async with client_for(cluster, user) as c:
            assert await c.get(KEYS[0]) == values[KEYS[0]]
            replica = cluster.replicas_of(cluster.slot_owner(c.slot(KEYS[0])))[0]
            await asyncio.to_thread(cluster.failover, replica)

            async def sees_new_primary() -> bool:
                return bool(await c.refresh()) and c.node_for(KEYS[0]).port == replica

            await until(sees_new_primary, what="the client to see the new primary")
            assert await c.get(KEYS[0]) == values[KEYS[0]]
            if row in WRITERS:
                assert await c.set(KEYS[0], "after")
            assert await c.reader.get(KEYS[1]) == values[KEYS[1]]
