"""clusterpool.adoption.plan: what adopting a map changes, without a server."""

from __future__ import annotations

from clusterpool.adoption import plan
from clusterpool.events import NodeAdded, NodeRemoved, RoleChanged, SlotsMoved, TopologyRefreshed
from clusterpool.topology import PRIMARY, REPLICA, Node, Shard, Topology

A = Node("h", 1, PRIMARY, "a")
B = Node("h", 2, REPLICA, "b")
C = Node("h", 3, PRIMARY, "c")
BASE = Topology((Shard(((0, 16383),), A, (B,), "a"),))


def kinds(adoption):
    return [type(e) for e in adoption.events]


def test_the_announced_map_in_use_needs_no_adoption():
    assert plan(BASE, BASE, {"h:1": False}, BASE, 2) is None


def test_the_first_map_gives_only_a_refreshed_event():
    a = plan(None, None, {}, BASE, 1)
    assert kinds(a) == [TopologyRefreshed] and a.topology.version == 1


def test_a_new_node_is_announced_and_nothing_is_closed():
    new = Topology((Shard(((0, 8191),), A, (B,), "a"), Shard(((8192, 16383),), C, (), "c")))
    a = plan(BASE, BASE, {"h:1": False, "h:2": True}, new, 5)
    assert NodeAdded in kinds(a) and SlotsMoved in kinds(a) and a.close == ()
    assert a.topology.version == 5


def test_a_removed_node_state_is_closed():
    new = Topology((Shard(((0, 16383),), A, (), "a"),))
    a = plan(BASE, BASE, {"h:1": False, "h:2": True}, new, 2)
    assert a.close == ("h:2",) and NodeRemoved in kinds(a)


def test_a_role_change_flips_readonly_for_new_connections():
    promoted = Topology((Shard(((0, 16383),), Node("h", 2, PRIMARY, "b"), (Node("h", 1, REPLICA, "a"),), "b"),))
    a = plan(BASE, BASE, {"h:1": False, "h:2": True}, promoted, 2)
    assert a.readonly == {"h:1": True, "h:2": False}
    assert kinds(a).count(RoleChanged) == 2


def test_events_are_diffed_against_the_announced_map_not_a_moved_patch():
    patched = BASE.with_slot_moved(5, "h", 3)
    a = plan(BASE, patched, {"h:1": False}, patched, 3)
    moved = [e for e in a.events if isinstance(e, SlotsMoved)]
    assert moved and moved[0].ranges == ((5, 5),)
