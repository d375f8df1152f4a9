"""The asyncio ClusterClient's surface against real clusters: RedisCluster's node API (compared with
redis.asyncio.cluster.RedisCluster's answers), target_nodes with node objects, topology()/nodes()/
node_for() (compared with the sync client's), stats(), the events() async iterator, the Prometheus
collector, and COMMAND INFO for a command the table does not know."""

from __future__ import annotations

import asyncio

import pytest
from async_helpers import TAG_PREFIX, other_tasks, tag_on, until
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError

from clusterpool import ClusterClient as SyncClient
from clusterpool.asyncio import ClusterClient
from clusterpool.events import Event, NodeAdded, RoleChanged
from clusterpool.snapshots import ClientStats, TopologyView

pytestmark = pytest.mark.asyncio

KEYS = [f"{{{TAG_PREFIX}n{i}}}:k" for i in range(200)]


@pytest.fixture(autouse=True)
def _clean_keys(request):
    """Delete this module's keys (many slots per node: conftest's drop_test_keys wants one)."""
    yield
    if "cluster" in request.fixturenames:
        with SyncClient(startup_nodes=request.getfixturevalue("cluster").startup_nodes) as c:
            keys = list(c.scan_iter(match="{" + TAG_PREFIX + "*", count=1000))
            for i in range(0, len(keys), 500):
                c.delete(*keys[i : i + 500])


def _client(cluster, **kw) -> ClusterClient:
    return ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True, **kw)


def _redis_py(cluster) -> RedisCluster:
    host, port = cluster.startup_nodes[0]
    return RedisCluster(host=host, port=port, decode_responses=True)


def _names(nodes) -> set[tuple[str, str]]:
    return {(n.name, n.server_type) for n in nodes}


def _slots_list_replicas(cluster) -> bool:
    """Every node's CLUSTER SLOTS names a replica for each range (Redis 7.0 leaves out replicas
    of a primary never written to, so redis-py's RedisCluster does not know them yet)."""
    for port in cluster.ports:
        r = cluster.client(port)
        try:
            if any(len(entry) < 4 for entry in r.execute_command("CLUSTER SLOTS")):
                return False
        finally:
            r.close()
    return True


async def _replicas_visible(cluster) -> None:
    """A write on every primary, then wait until CLUSTER SLOTS lists the replicas."""
    for port in cluster.primaries():
        r = cluster.client(port)
        try:
            r.set(f"{tag_on(cluster, port)}:written", 1)
            r.wait(1, 5000)
        finally:
            r.close()
    await until(lambda: _slots_list_replicas(cluster), what="CLUSTER SLOTS listing every replica")


# ---- node API vs redis.asyncio.cluster.RedisCluster ------------------------------------

async def test_node_lists_match_redis_pys(cluster):
    await _replicas_visible(cluster)
    async with _client(cluster) as c, _redis_py(cluster) as rc:
        assert _names(c.get_nodes()) == _names(rc.get_nodes())
        assert _names(c.get_primaries()) == _names(rc.get_primaries())
        assert _names(c.get_replicas()) == _names(rc.get_replicas())
        assert c.get_random_node() in c.get_nodes()


async def test_get_node_by_address_and_by_name_match_redis_pys(cluster):
    async with _client(cluster) as c, _redis_py(cluster) as rc:
        for n in rc.get_nodes():
            mine = c.get_node(n.host, int(n.port))
            assert mine is not None and (mine.name, mine.server_type) == (n.name, n.server_type)
            assert c.get_node(node_name=n.name) == n  # equal to redis-py's ClusterNode of that address
        assert c.get_node(node_name="127.0.0.1:1") is None
        with pytest.raises(DataError):
            c.get_node()


async def test_keyless_target_node_is_a_primary_unless_reads_go_to_replicas(cluster):
    async with _client(cluster) as c, _redis_py(cluster) as rc:
        await c.initialize()
        await rc.initialize()
        for client in (c, rc):
            if not hasattr(client, "get_keyless_target_node"):
                continue  # redis.asyncio's RedisCluster has it from redis-py 8.2 on
            assert await client.get_keyless_target_node("GET") in client.get_primaries()
        reader = c.reader
        picks = {(await reader.get_keyless_target_node("GET")).name for _ in range(200)}
        assert picks == {n.name for n in c.get_nodes()}
        assert await reader.get_keyless_target_node("SET") in c.get_primaries()


async def test_node_from_key_and_keyslot_match_redis_pys(cluster):
    await _replicas_visible(cluster)
    async with _client(cluster) as c, _redis_py(cluster) as rc:
        for key in KEYS:
            assert c.keyslot(key) == rc.keyslot(key)
            for replica in (False, True):
                mine, theirs = c.get_node_from_key(key, replica=replica), rc.get_node_from_key(key, replica=replica)
                assert (mine.name, mine.server_type) == (theirs.name, theirs.server_type)  # type: ignore[union-attr]


async def test_the_default_node_is_a_primary_until_set_to_another_node(cluster):
    async with _client(cluster) as c:
        first = c.get_default_node()
        assert first is not None and first.server_type == "primary"
        other = next(n for n in c.get_primaries() if n != first)
        c.set_default_node(other)
        assert c.get_default_node() == other
        assert c.reader.get_default_node() == other  # views share it
        with pytest.raises(DataError):
            c.set_default_node(None)


async def test_the_node_api_sees_an_empty_map_before_discovery(cluster):
    c = _client(cluster)
    assert (c.get_nodes(), c.get_default_node(), c.topology().shards, c.nodes()) == ([], None, (), ())
    await c.aclose()


# ---- target_nodes ----------------------------------------------------------------------

async def test_target_nodes_take_our_node_objects(cluster):
    async with _client(cluster) as c:
        ids = {n.name: n.id for n in c.nodes()}
        for node in c.get_nodes():
            assert await c.cluster_myid(node) == ids[node.name]


async def test_target_nodes_take_redis_pys_node_objects(cluster):
    async with _client(cluster) as c, _redis_py(cluster) as rc:
        ids = {n.name: n.id for n in c.nodes()}
        for node in rc.get_nodes():
            assert await c.cluster_myid(node) == ids[node.name]  # type: ignore[arg-type]


async def test_target_nodes_take_a_list_of_nodes_and_the_flags(cluster):
    async with _client(cluster) as c:
        per_node = await c.execute_command("CLUSTER MYID", target_nodes=c.get_replicas())
        assert set(per_node) == {n.name for n in c.get_replicas()}
        flagged = await c.execute_command("CLUSTER MYID", target_nodes=ClusterClient.REPLICAS)
        assert flagged == per_node
        by_dict = await c.execute_command("CLUSTER MYID", target_nodes={n.name: n for n in c.get_replicas()})
        assert by_dict == per_node


# ---- snapshots: the same as the sync client's ------------------------------------------

async def test_topology_nodes_and_node_for_agree_with_the_sync_client(cluster):
    with SyncClient(startup_nodes=cluster.startup_nodes) as sync:
        sync.connect()
        sync_view = sync.topology()
        sync_nodes = sync.nodes()
        sync_for = [(sync.node_for(k), sync.reader.node_for(k, read=True).role) for k in KEYS]
        async with _client(cluster) as c:
            view = c.topology()
            assert isinstance(view, TopologyView)
            assert [(s.slots, s.primary.name if s.primary else None, [r.name for r in s.replicas])
                    for s in view.shards] == [
                (s.slots, s.primary.name if s.primary else None, [r.name for r in s.replicas])
                for s in sync_view.shards]
            assert {(n.name, n.role, n.id) for n in view.nodes} == {(n.name, n.role, n.id) for n in sync_view.nodes}
            assert c.nodes() == sync_nodes and c.nodes("replica") == sync.nodes("replica")
            assert [(c.node_for(k), c.reader.node_for(k, read=True).role) for k in KEYS] == sync_for
            view.as_dict()  # JSON-ready, as the sync one


async def test_topology_shows_connection_counters_of_nodes_in_use(cluster):
    async with _client(cluster) as c:
        await c.set(KEYS[0], "x")
        owner = c.node_for(KEYS[0]).name
        node = next(n for n in c.topology().nodes if n.name == owner)
        assert node.pool is not None and node.pool.size >= 1 and node.pool.acquires >= 1


# ---- stats -----------------------------------------------------------------------------

async def test_stats_count_the_commands_sent(cluster):
    async with _client(cluster) as c:
        before = c.stats()
        assert isinstance(before, ClientStats)
        await asyncio.gather(*(c.set(k, "v") for k in KEYS))
        after = c.stats()
        sent = sum(m.commands for conn in after.connections for m in conn.shared)
        assert sent - sum(m.commands for conn in before.connections for m in conn.shared) >= len(KEYS)
        assert after.total_connections >= len(c.get_primaries())
        assert {p.node for p in after.nodes} >= {n.name for n in c.get_primaries()}
        assert after.pending == 0 and after.topology_version == c.topology().version


async def test_stats_show_a_blocking_commands_dedicated_lease(cluster):
    async with _client(cluster) as c:
        q = KEYS[1]
        blocked = asyncio.ensure_future(c.blpop([q], 0))
        await until(lambda: c.stats().leased == 1, what="the BLPOP's lease")
        assert await c.rpush(q, "x") == 1
        assert list(await blocked) == [q, "x"]
        await until(lambda: c.stats().leased == 0, what="the lease returned")


# ---- events ----------------------------------------------------------------------------

async def _next(stream, kind: type[Event], pred, timeout: float = 60.0) -> Event:
    """The first event of type `kind` matching `pred` from `stream`, within `timeout` s."""
    async with asyncio.timeout(timeout):
        async for ev in stream:
            if isinstance(ev, kind) and pred(ev):
                return ev
    raise AssertionError(f"the stream ended without a {kind.__name__}")


@pytest.mark.chaos
async def test_events_iterator_yields_a_node_added_for_a_new_replica(fresh_cluster):
    cluster = fresh_cluster
    async with _client(cluster, refresh_interval=0.5) as c:
        stream = c.events()
        primary = cluster.primaries()[0]
        port = await asyncio.to_thread(cluster.add_node, primary)
        added = await _next(stream, NodeAdded, lambda e: e.node.port == port)
        if added.node.role != "replica":  # type: ignore[attr-defined]  # seen after MEET, before REPLICATE
            await _next(stream, RoleChanged, lambda e: e.node.port == port and e.new_role == "replica")
        stream.close()
    assert other_tasks() == set()


@pytest.mark.chaos
async def test_events_iterator_yields_role_changes_on_failover(fresh_cluster):
    cluster = fresh_cluster
    async with _client(cluster, refresh_interval=0.5) as c:
        stream = c.events()
        replica = cluster.replicas()[0]
        await asyncio.to_thread(cluster.failover, replica)
        promoted = await _next(stream, RoleChanged, lambda e: e.node.port == replica and e.new_role == "primary")
        assert promoted.old_role == "replica"  # type: ignore[attr-defined]
        stream.close()


async def test_events_iterator_ends_when_the_client_closes(cluster):
    c = _client(cluster)
    await c.initialize()
    stream = c.events()
    await c.aclose()
    assert [e async for e in stream] == []
    assert stream.closed


# ---- Prometheus ------------------------------------------------------------------------

async def test_prometheus_collector_exposes_the_async_clients_samples(cluster):
    prometheus_client = pytest.importorskip("prometheus_client")
    from clusterpool.metrics import PoolCollector

    async with _client(cluster) as c:
        await c.set(KEYS[2], "x")
        owner = c.node_for(KEYS[2]).name
        registry = prometheus_client.CollectorRegistry()
        registry.register(PoolCollector(c))
        assert registry.get_sample_value("clusterpool_pool_size", {"node": owner}) >= 1
        assert registry.get_sample_value("clusterpool_async_commands_total", {"node": owner}) >= 1
        assert registry.get_sample_value("clusterpool_async_shared_pending", {"node": owner}) == 0
        assert registry.get_sample_value("clusterpool_topology_version") == c.topology().version


# ---- COMMAND INFO ----------------------------------------------------------------------

def _tries(cluster, port: int, *commands: str) -> int:
    """Calls of `commands` that reached node `port`, rejected ones (MOVED) included."""
    r = cluster.client(port)
    try:
        stats = r.info("commandstats")
    finally:
        r.close()
    return sum(int(stats.get(f"cmdstat_{c}", {}).get(k, 0)) for c in commands for k in ("calls", "rejected_calls"))


async def test_a_command_missing_from_the_table_is_looked_up_and_routed_by_key(cluster):
    async with _client(cluster) as c:
        state = c._state
        state.table = state.commands.table(bundled={})  # as if the shipped specs lacked GET and SET
        default = c.get_default_node()
        assert default is not None
        port = next(p for p in cluster.primaries() if p != default.port)
        key = f"{tag_on(cluster, port)}:unknown"
        before = _tries(cluster, default.port, "get", "set")
        assert await c.execute_command("SET", key, "v") is True
        assert await asyncio.gather(*(c.execute_command("GET", key) for _ in range(5))) == ["v"] * 5
        assert state.commands.asked == 2  # one COMMAND INFO per name, however many callers
        info = state.table.get("get")
        assert info is not None and info.readonly
        # routed by the key to its owner: none of them went to the default node (and got MOVED)
        assert _tries(cluster, default.port, "get", "set") == before


# ---- redis-py helpers that need the node API -------------------------------------------

async def test_scan_iter_follows_every_nodes_cursor_through_get_node(cluster):
    async with _client(cluster) as c:
        await asyncio.gather(*(c.set(k, "v") for k in KEYS))
        found = [k async for k in c.scan_iter(match="{" + TAG_PREFIX + "n*", count=10)]
        assert sorted(found) == sorted(KEYS)
