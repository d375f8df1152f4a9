"""The pure pieces both clients' node API and inspection call: node lookup, default node, snapshots,
the asyncio connection counters in PoolStats shape, and the COMMAND INFO lookup. No server."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import SlotNotCoveredError as RedisSlotNotCovered

from clusterpool import errors
from clusterpool.asyncio.commandinfo import CommandLookup, entry_of, unknown_name
from clusterpool.asyncio.dedicated import DedicatedStats
from clusterpool.asyncio.inspection import pool_stats_of
from clusterpool.asyncio.mux import MuxStats
from clusterpool.asyncio.connections import NodeConnectionsStats
from clusterpool.commands import CommandTable, bundled_entries
from clusterpool.snapshots import client_stats, nodes_with_role, topology_view
from clusterpool.nodestate import NodeState
from clusterpool.handles import NodeHandle, another_default, known_node_name, node_from_key, node_name_for, pick_default_node
from clusterpool.snapshots import PoolStats
from clusterpool.slots import slot_of
from clusterpool.topology import PRIMARY, REPLICA, Node, Shard, Topology

A = Node("h", 1, PRIMARY, "a")
A2 = Node("h", 2, REPLICA, "a2")
B = Node("h", 3, PRIMARY, "b")
TOPO = Topology((Shard(((0, 8191),), A, (A2,), "a"), Shard(((8192, 16383),), B, (), "b")))


def _key_on(shard_start: int) -> str:
    """A key whose slot is in the half starting at `shard_start`."""
    i = 0
    while True:
        k = f"k{i}"
        s = slot_of(k)
        if (s < 8192) == (shard_start == 0):
            return k
        i += 1


# ---- nodeapi ---------------------------------------------------------------------------

def test_node_name_for_joins_host_and_port():
    assert node_name_for("10.0.0.1", 7000, None) == "10.0.0.1:7000"


def test_node_name_for_resolves_localhost_as_redis_py_does():
    assert node_name_for("localhost", 7000, None) == "127.0.0.1:7000"


def test_node_name_for_takes_the_name_without_host_and_port():
    assert node_name_for(None, None, "h:1") == "h:1"


def test_node_name_for_is_none_when_given_nothing():
    assert node_name_for(None, None, None) is None


def test_node_from_key_is_the_primary_of_the_keys_slot():
    assert node_from_key(TOPO, _key_on(8192)) == B


def test_node_from_key_with_replica_is_the_first_replica():
    assert node_from_key(TOPO, _key_on(0), replica=True) == A2


def test_node_from_key_with_replica_is_none_for_a_shard_without_replicas():
    assert node_from_key(TOPO, _key_on(8192), replica=True) is None


def test_node_from_key_raises_redis_pys_error_for_an_unserved_slot():
    half = Topology((Shard(((0, 8191),), A, (), "a"),))
    with pytest.raises(RedisSlotNotCovered):
        node_from_key(half, _key_on(8192))


def test_default_node_is_the_first_primary_at_first():
    assert pick_default_node(TOPO, None, frozenset()) == A


def test_default_node_keeps_the_current_one_while_usable():
    assert pick_default_node(TOPO, B.name, frozenset()) == B


def test_default_node_moves_off_a_node_that_is_down():
    assert pick_default_node(TOPO, A.name, frozenset({A.name})) == B


def test_default_node_moves_off_a_node_no_longer_in_the_map():
    assert pick_default_node(TOPO, "gone:1", frozenset()) == A


def test_another_default_is_another_primary():
    assert another_default(TOPO, A.name) == B


def test_another_default_is_a_replica_when_no_other_primary():
    assert another_default(Topology((Shard(((0, 16383),), A, (A2,), "a"),)), A.name) == A2


def test_another_default_is_none_when_the_map_has_no_other_node():
    assert another_default(Topology((Shard(((0, 16383),), A, (), "a"),)), A.name) is None


def test_default_node_without_primaries_raises():
    with pytest.raises(errors.SlotNotCoveredError):
        pick_default_node(Topology(()), None, frozenset())


def test_known_node_name_takes_node_objects_and_names_in_the_map():
    assert known_node_name(TOPO, NodeHandle("h", 3, "primary")) == "h:3"
    assert known_node_name(TOPO, "h:1") == "h:1"


def test_known_node_name_is_none_for_a_node_not_in_the_map_or_none():
    assert known_node_name(TOPO, "h:9") is None
    assert known_node_name(TOPO, None) is None


def test_node_handles_equal_any_node_object_with_their_name():
    class Other:
        name = "h:1"
        server_type = "primary"

    assert NodeHandle("h", 1, "primary") == Other()
    assert NodeHandle("h", 1, "primary") != NodeHandle("h", 2, "primary")
    assert len({NodeHandle("h", 1, "primary"), NodeHandle("h", 1, "replica")}) == 1


# ---- inspection ------------------------------------------------------------------------

def _pool(name: str, size: int = 1) -> PoolStats:
    return PoolStats(name, 4, size, 1, size - 1, 0, size, 0, 2, 0, 5, 0.0)


def test_topology_view_has_every_shard_with_live_node_state():
    st = NodeState(A.name, _pool(A.name))
    st.latency = 0.0015
    view = topology_view(TOPO, {A.name: st}, lambda s: s.pool)
    assert [s.slots for s in view.shards] == [((0, 8191),), ((8192, 16383),)]
    a = view.shards[0].primary
    assert a is not None and a.latency_ms == 1.5 and a.pool == _pool(A.name) and a.health == "healthy"
    assert view.shards[0].replicas[0].pool is None  # no connection made to it yet
    assert [n.name for n in view.nodes] == [A.name, A2.name, B.name]


def test_nodes_with_role_filters_by_role():
    assert nodes_with_role(TOPO.nodes, "replica") == (A2,)
    assert nodes_with_role(TOPO.nodes, None) == TOPO.nodes


def test_nodes_with_role_refuses_another_role():
    with pytest.raises(errors.ConfigurationError):
        nodes_with_role(TOPO.nodes, "master")


def test_client_stats_sums_the_nodes():
    s = client_stats([_pool("a", 3), _pool("b", 2)], 4, 5, 6)
    assert (s.total_connections, s.in_use, s.idle, s.acquire_timeouts) == (5, 2, 3, 4)
    assert (s.refreshes, s.refresh_requests, s.topology_version, s.connections) == (4, 5, 6, ())


def _conns(pending: tuple[int, ...], leased: int = 0, idle: int = 0) -> NodeConnectionsStats:
    shared = tuple(MuxStats(writes=1, commands=10, replies=9, dropped=0, skipped=0, pending=p) for p in pending)
    d = DedicatedStats("h:1", 4, idle, leased, 0, 0, leased + idle + 1, 1, 0)
    return NodeConnectionsStats("h:1", shared, opened_shared=len(pending) + 1, dedicated=d)


def test_pool_stats_of_counts_a_shared_connection_with_pending_replies_as_in_use():
    p = pool_stats_of(_conns((3, 0), leased=1, idle=1), max_shared=2)
    assert (p.size, p.in_use, p.idle, p.max_connections) == (4, 2, 2, 6)


def test_pool_stats_of_counts_connections_of_both_kinds_opened_and_closed():
    p = pool_stats_of(_conns((0, 0), leased=1), max_shared=2)
    assert (p.created, p.closed, p.acquires) == (3 + 2, 1 + 1, 20)


def test_client_stats_sums_pending_replies_and_leases_of_the_async_layer():
    c = (_conns((3, 1), leased=2), _conns((4,)))
    s = client_stats([pool_stats_of(x, 2) for x in c], 0, 0, 1, None, c)
    assert (s.pending, s.leased) == (8, 2)


# ---- COMMAND INFO lookup ---------------------------------------------------------------

GET_ENTRY = json.loads(bundled_entries()["get"])


def test_unknown_name_is_none_for_a_bundled_command():
    assert unknown_name(CommandTable.bundled_with(None), ("GET", "k")) is None


def test_unknown_name_is_the_lowercased_command_missing_from_the_table():
    assert unknown_name(CommandTable(), (b"GET", "k")) == "get"


def test_unknown_name_is_the_container_for_an_unknown_subcommand():
    assert unknown_name(CommandTable.bundled_with(None), ("CLIENT", "NO-TOUCH", "ON")) == "client"


def test_entry_of_takes_the_one_entry_or_none():
    assert entry_of([GET_ENTRY]) == GET_ENTRY
    assert entry_of([None]) is None


def test_a_learned_entry_routes_the_command_by_its_key():
    lookup = CommandLookup()
    table = lookup.table(bundled={})

    async def ask(name: str):
        return [GET_ENTRY]

    asyncio.run(lookup.learn("get", ask))
    info, _ = table.resolve(("GET", "k"))
    assert info.name == "get" and info.keys(["GET", "k"]) == ["k"] and info.readonly
    assert unknown_name(table, ("GET", "k")) is None


def test_concurrent_callers_share_one_ask():
    lookup = CommandLookup()
    calls = []

    async def ask(name: str):
        calls.append(name)
        await asyncio.sleep(0)
        return [GET_ENTRY]

    async def main():
        await asyncio.gather(*(lookup.learn("get", ask) for _ in range(10)))

    asyncio.run(main())
    assert calls == ["get"] and not lookup.wants("get")


def test_a_failed_ask_is_asked_again_next_time():
    lookup = CommandLookup()

    async def ask(name: str):
        raise RedisConnectionError("down")

    asyncio.run(lookup.learn("get", ask))
    assert lookup.wants("get")
    with pytest.raises(LookupError):
        lookup.fetch("get")


def test_a_refused_ask_is_not_asked_again():
    lookup = CommandLookup()

    async def ask(name: str):
        raise ResponseError("NOPERM")

    asyncio.run(lookup.learn("get", ask))
    assert not lookup.wants("get") and lookup.fetch("get") is None
