"""clusterpool.events: diff between two topologies, event serialisation."""

from __future__ import annotations

import json

from clusterpool.events import (
    EVENT_TYPES,
    NodeAdded,
    NodeHealthChanged,
    NodeRemoved,
    RefreshFailed,
    RoleChanged,
    SlotsMoved,
    TopologyRefreshed,
    diff,
)
from clusterpool.topology import PRIMARY, REPLICA, Node, Shard, Topology

H = "127.0.0.1"


def P(port):
    return Node(H, port, PRIMARY, f"id{port}")


def R(port):
    return Node(H, port, REPLICA, f"id{port}")


def base():
    return Topology(
        (
            Shard(((0, 5460),), P(7000), (R(7003),), "id7000"),
            Shard(((5461, 10922),), P(7001), (R(7004),), "id7001"),
            Shard(((10923, 16383),), P(7002), (R(7005),), "id7002"),
        )
    )


def test_no_events_for_identical_maps():
    assert diff(base(), base()) == []


def test_no_events_when_only_version_differs():
    assert diff(base(), base().with_version(9)) == []


def test_node_added():
    old = base()
    new = Topology(old.shards[:2] + (Shard(((10923, 16383),), P(7002), (R(7005), R(7006)), "id7002"),))
    assert diff(old, new) == [NodeAdded(R(7006))]


def test_node_removed():
    old = base()
    new = Topology(old.shards[:2] + (Shard(((10923, 16383),), P(7002), (), "id7002"),))
    assert diff(old, new) == [NodeRemoved(R(7005))]


def _failover():
    old = base()
    new = Topology(
        (
            Shard(((0, 5460),), Node(H, 7003, PRIMARY, "id7003"), (Node(H, 7000, REPLICA, "id7000"),), "id7003"),
        )
        + old.shards[1:]
    )
    return old, new


def test_failover_reports_role_change_for_both_nodes():
    old, new = _failover()
    roles = {e.node.name: e for e in diff(old, new) if isinstance(e, RoleChanged)}
    assert set(roles) == {f"{H}:7000", f"{H}:7003"}
    assert (roles[f"{H}:7000"].old_role, roles[f"{H}:7000"].new_role) == (PRIMARY, REPLICA)
    assert (roles[f"{H}:7003"].old_role, roles[f"{H}:7003"].new_role) == (REPLICA, PRIMARY)


def test_failover_promoted_node_names_old_primary():
    old, new = _failover()
    roles = {e.node.name: e for e in diff(old, new) if isinstance(e, RoleChanged)}
    assert roles[f"{H}:7003"].old_primary == f"{H}:7000"
    assert roles[f"{H}:7000"].old_primary is None


def test_failover_reports_no_added_or_removed_nodes():
    old, new = _failover()
    assert not [e for e in diff(old, new) if isinstance(e, (NodeAdded, NodeRemoved))]


def test_failover_moves_slots_to_promoted_node():
    old, new = _failover()
    moved = [e for e in diff(old, new) if isinstance(e, SlotsMoved)]
    assert moved == [SlotsMoved(((0, 5460),), f"{H}:7000", f"{H}:7003")]


def test_slot_migration_reports_slots_moved():
    old = base()
    new = Topology(
        (
            Shard(((0, 99), (200, 5460)), P(7000), (R(7003),), "id7000"),
            Shard(((100, 199), (5461, 10922)), P(7001), (R(7004),), "id7001"),
            old.shards[2],
        )
    )
    assert diff(old, new) == [SlotsMoved(((100, 199),), f"{H}:7000", f"{H}:7001")]


def test_slot_migration_single_slot_via_with_slot_moved():
    old = base()
    new = old.with_slot_moved(12000, H, 7000)
    assert diff(old, new) == [SlotsMoved(((12000, 12000),), f"{H}:7002", f"{H}:7000")]


def test_slots_moved_groups_by_source_and_target():
    old = base()
    new = old.with_slot_moved(1, H, 7001).with_slot_moved(2, H, 7001).with_slot_moved(6000, H, 7002)
    moved = {(e.source, e.target): e.ranges for e in diff(old, new)}
    assert moved == {
        (f"{H}:7000", f"{H}:7001"): ((1, 2),),
        (f"{H}:7001", f"{H}:7002"): ((6000, 6000),),
    }


def test_slots_lost_by_failed_primary_have_target_none():
    old = base()
    new = Topology((Shard(((0, 5460),), None, (R(7003),), "id7000"),) + old.shards[1:])
    events = diff(old, new)
    assert SlotsMoved(((0, 5460),), f"{H}:7000", None) in events
    assert NodeRemoved(P(7000)) in events


def test_event_as_dict_includes_event_name():
    e = SlotsMoved(((1, 2),), "a:1", "b:2")
    d = e.as_dict()
    assert d["event"] == "slots_moved"
    assert d["source"] == "a:1" and d["target"] == "b:2"


def test_every_event_type_as_dict_is_json_serialisable():
    events = [
        NodeAdded(P(7000)),
        NodeRemoved(R(7003)),
        RoleChanged(P(7003), REPLICA, PRIMARY, f"{H}:7000"),
        SlotsMoved(((0, 10), (20, 20)), f"{H}:7000", None),
        NodeHealthChanged(f"{H}:7000", "healthy", "unhealthy", "3 failures"),
        TopologyRefreshed(3, f"{H}:7000", 2),
        RefreshFailed("no node answered", ("a:1: refused",)),
    ]
    for e in events:
        d = json.loads(json.dumps(e.as_dict()))
        assert d["event"] == e.name
        assert EVENT_TYPES[d["event"]] is type(e)


def test_node_event_as_dict_nests_node_fields():
    d = NodeAdded(P(7000)).as_dict()
    assert d["node"]["host"] == H and d["node"]["port"] == 7000 and d["node"]["role"] == PRIMARY


def test_diff_events_are_json_serialisable():
    old, new = _failover()
    for e in diff(old, new):
        json.dumps(e.as_dict())
