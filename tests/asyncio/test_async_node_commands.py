"""Node and connection commands on the asyncio client, as redis.asyncio RedisCluster code uses
them: CLIENT SETNAME / SETINFO, INFO, BGSAVE, replace_default_node.

The drop-in scenarios run twice through one parametrized fixture, on redis.asyncio's
RedisCluster and on ours, and look at each node's CLIENT LIST through a plain redis.Redis.
The rest check our own promise: every connection of a named node carries the name (shared
ones renamed in place, dedicated ones renewed, new ones named at connect), and a command in
flight on a shared connection is not disturbed by the renaming.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from async_helpers import tag_on, until
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from clusterpool.asyncio import ClusterClient

pytestmark = pytest.mark.asyncio

KINDS = ("redis.asyncio", "clusterpool")


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, cluster: Any) -> Callable[[], Any]:
    """A maker of fresh clients of one kind (decode_responses=True), for a scenario run on both."""
    def new() -> Any:
        host, port = cluster.startup_nodes[0]
        if request.param == "redis.asyncio":
            return RedisCluster(host=host, port=port, decode_responses=True)
        return ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True)
    return new


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _clients_of(cluster: Any, port: int) -> list[dict[str, Any]]:
    """Node `port`'s CLIENT LIST, read by a plain redis.Redis (not a client under test)."""
    r = cluster.client(port)
    try:
        return r.client_list()
    finally:
        r.close()


def _named(cluster: Any, port: int, *names: str) -> list[str]:
    return [c["name"] for c in _clients_of(cluster, port) if c.get("name") in names]


def _server_version(cluster: Any) -> tuple[int, ...]:
    r = cluster.client(cluster.primaries()[0])
    try:
        return tuple(int(x) for x in r.info("server")["redis_version"].split(".")[:2])
    finally:
        r.close()


# ---- drop-in: the same scenario on redis.asyncio's RedisCluster and on ours --------------


async def test_client_setname_on_all_nodes_leaves_a_named_connection_another_client_can_kill(make, cluster):
    """redis-py's test_client_kill: two clients name themselves on every node before using it;
    a primary lists both once, and killing one by its address leaves the other."""
    one, two = _unique("cp-one"), _unique("cp-two")
    async with make() as a, make() as b:
        node = a.get_primaries()[0]
        assert await a.client_setname(one, target_nodes="all") is True
        assert await b.client_setname(two, target_nodes="all") is True
        listed = [c for c in await a.client_list(target_nodes=node) if c.get("name") in (one, two)]
        assert sorted(c["name"] for c in listed) == [one, two]
        addr = next(c["addr"] for c in listed if c["name"] == two)
        assert await a.client_kill(addr, target_nodes=node) is True
        assert [c["name"] for c in await a.client_list(target_nodes=node) if c.get("name") in (one, two)] == [one]


async def test_client_setname_on_all_nodes_is_in_every_nodes_client_list(make, cluster):
    name = _unique("cp-all")
    async with make() as c:
        assert await c.client_setname(name, target_nodes="all") is True
        assert await c.client_getname(target_nodes=c.get_nodes()[-1]) == name
        for node in c.get_nodes():  # (RedisCluster on Redis 7.0 may not know an unwritten primary's replica)
            assert _named(cluster, node.port, name), node


async def test_client_setname_without_targets_is_in_the_default_nodes_client_list(make, cluster):
    name = _unique("cp-default")
    async with make() as c:
        assert await c.client_setname(name) is True
        assert await c.client_getname() == name
        assert _named(cluster, c.get_default_node().port, name)


async def test_client_setname_with_a_space_is_refused_by_the_server(make):
    async with make() as c:
        with pytest.raises(ResponseError):
            await c.client_setname("two words", target_nodes="all")


async def test_client_setinfo_on_all_nodes_is_in_every_nodes_client_list(make, cluster):
    lib = _unique("cplib")
    async with make() as c:
        if _server_version(cluster) < (7, 2):  # no CLIENT SETINFO before 7.2: the server's error
            with pytest.raises(ResponseError):
                await c.client_setinfo("LIB-NAME", lib, target_nodes="all")
            return
        assert await c.client_setinfo("LIB-NAME", lib, target_nodes="all")
        for node in c.get_nodes():
            assert any(e.get("lib-name") == lib for e in _clients_of(cluster, node.port)), node


async def test_info_without_targets_is_the_default_nodes_one_dict(make):
    async with make() as c:
        assert (await c.info("server"))["tcp_port"] == c.get_default_node().port


async def test_bgsave_then_bgsave_schedule_on_the_default_node(make):
    """redis-py's test_bgsave (test_commands.py): each BGSAVE (BGSAVE SCHEDULE both times, on the
    default node) waits on info("persistence") until the previous one has finished."""
    async with make() as c:
        async def no_bgsave() -> bool:
            info = await c.info("persistence")
            return int(info.get("rdb_bgsave_in_progress", 0)) == 0

        await until(no_bgsave, what="no BGSAVE in progress")
        assert await c.bgsave()
        await until(no_bgsave, what="the first BGSAVE to finish")
        assert await c.bgsave(True)
        await until(no_bgsave, what="the second BGSAVE to finish")


async def test_replace_default_node_picks_another_primary_then_the_given_node(make):
    """redis-py's test_replace_cluster_node (redis.asyncio 8.2 has replace_default_node too)."""
    async with make() as c:
        before = c.get_default_node()
        c.replace_default_node()
        assert c.get_default_node() != before
        assert c.get_default_node() in c.get_primaries()
        c.replace_default_node(before)
        assert c.get_default_node() == before


# ---- ours: every connection of a named node carries the name -----------------------------


def _normal_clients_of(cluster: Any, port: int) -> list[dict[str, Any]]:
    """Node `port`'s clients but the one asking and replication links."""
    return [c for c in _clients_of(cluster, port) if c["cmd"] != "client|list" and not set(c["flags"]) & {"S", "M"}]


async def test_client_setname_renames_open_shared_and_dedicated_connections_and_names_new_ones(cluster):
    port = cluster.primaries()[0]
    key = f"{tag_on(cluster, port)}:named"
    name = _unique("cp-every")
    before = {c["id"] for c in _normal_clients_of(cluster, port)}

    def ours() -> list[dict[str, Any]]:
        return [c for c in _normal_clients_of(cluster, port) if c["id"] not in before]

    c = ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True)
    try:
        await c.set(key, "v")  # a shared connection
        blocked = asyncio.ensure_future(c.blpop([key + ":list"], 0))  # a leased dedicated connection
        await until(lambda: any(e.get("cmd") == "blpop" for e in ours()), what="BLPOP blocking")
        assert await c.client_setname(name) is True
        await c.rpush(key + ":list", "x")
        assert list(await blocked) == [key + ":list", "x"]
        assert await c.blpop([key + ":list"], 0.01) is None  # a dedicated connection again
        # the one leased before the renaming was closed when returned, not reused: every one is named
        await until(lambda: all(e.get("name") == name for e in ours()), what=f"every connection named: {ours()}")
        assert {e["cmd"] for e in ours()} >= {"rpush", "blpop"}
    finally:
        await c.aclose()


async def test_client_setname_does_not_disturb_commands_in_flight(cluster):
    name = _unique("cp-inflight")
    c = ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True)
    key = f"{tag_on(cluster, cluster.primaries()[0])}:inflight"
    try:
        await c.set(key, "v")
        gets = [asyncio.ensure_future(c.get(key)) for _ in range(200)]
        assert await c.client_setname(name, target_nodes="all") is True
        assert await asyncio.gather(*gets) == ["v"] * 200
        assert await c.client_getname(target_nodes=c.get_node_from_key(key)) == name
    finally:
        await c.aclose()
