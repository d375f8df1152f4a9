"""clusterpool.agreement: merging disagreeing views of the cluster (joins, forgets, failovers,
a partitioned node with an old epoch), without a server."""

from __future__ import annotations

from clusterpool.agreement import View, decide, make_view, merge, parse_epochs
from clusterpool.topology import PRIMARY, REPLICA, Node, Shard, Topology

H = "127.0.0.1"


def node(port, role=PRIMARY, health="online"):
    return Node(H, port, role, f"id{port}", health)


def name(port):
    return f"{H}:{port}"


def shard(primary, ranges, *replicas):
    p = node(primary) if primary is not None else None
    return Shard(tuple(ranges), p, tuple(node(r, REPLICA) for r in replicas), f"id{primary}")


def topo(*shards):
    return Topology(tuple(shards))


def view(source, t, **epochs):
    """A view answered by `source` knowing the given epochs (as e7001=3)."""
    return View(name(source), t, {f"id{k[1:]}": v for k, v in epochs.items()})


# 3 primaries x 1 replica: 7001..7003 primaries, 7004..7006 their replicas
BASE = topo(
    shard(7001, [(0, 5460)], 7004),
    shard(7002, [(5461, 10922)], 7005),
    shard(7003, [(10923, 16383)], 7006),
)
EPOCHS = {"e7001": 1, "e7002": 2, "e7003": 3}
# 7007 joined as an empty primary
JOINED = topo(*BASE.shards, shard(7007, []))


def names(t):
    return set(t.by_name)


# ---------------------------------------------------------------- the common case


def test_views_equal_to_current_map_change_nothing():
    d = decide(BASE, [view(7001, BASE, **EPOCHS), view(7002, BASE, **EPOCHS)])
    assert d.topology is None and not d.ask


def test_no_answers_change_nothing():
    assert decide(BASE, []).topology is None


def test_first_answer_is_adopted_at_discovery():
    d = decide(None, [view(7001, BASE, **EPOCHS)])
    assert d.topology == BASE and not d.ask


def test_agreeing_views_of_a_moved_slot_are_adopted():
    moved = topo(shard(7001, [(0, 5459)], 7004), shard(7002, [(5460, 10922)], 7005), BASE.shards[2])
    d = decide(BASE, [view(7001, moved, **EPOCHS), view(7002, moved, **EPOCHS)])
    assert d.topology == moved


# ---------------------------------------------------------------- joins


def test_a_new_node_named_by_one_view_is_asked_before_anything_is_adopted():
    d = decide(BASE, [view(7001, JOINED, **EPOCHS), view(7002, BASE, **EPOCHS)], asked=[name(7001), name(7002)])
    assert d.topology is None
    assert name(7007) in d.ask


def test_a_new_node_that_answered_is_adopted():
    views = [view(7001, JOINED, **EPOCHS), view(7002, BASE, **EPOCHS), view(7007, JOINED, **EPOCHS)]
    d = decide(BASE, views, final=True)
    assert names(d.topology) == names(JOINED)


def test_a_new_node_named_by_a_minority_that_did_not_answer_is_not_adopted():
    views = [view(7001, JOINED, **EPOCHS), view(7002, BASE, **EPOCHS), view(7003, BASE, **EPOCHS)]
    d = decide(BASE, views, silent=[name(7007)], final=True)
    assert d.topology is None  # the merged map is the current one


def test_a_new_node_named_by_most_views_is_adopted_without_its_answer():
    views = [view(7001, JOINED, **EPOCHS), view(7002, JOINED, **EPOCHS), view(7003, BASE, **EPOCHS)]
    d = decide(BASE, views, silent=[name(7007)], final=True)
    assert name(7007) in names(d.topology)


def test_a_joined_node_is_kept_while_gossip_has_not_reached_the_sampled_nodes():
    """The flapping case: 7007 was adopted; three nodes that have not heard of it answer."""
    sample = [view(p, BASE, **EPOCHS) for p in (7002, 7003, 7005)]
    d = decide(JOINED, sample, asked=[name(p) for p in (7002, 7003, 7005)])
    assert d.topology is None and name(7007) in d.ask and name(7001) in d.ask
    everyone = sample + [view(7001, JOINED, **EPOCHS), view(7007, JOINED, **EPOCHS)]
    final = decide(JOINED, everyone, final=True)
    assert final.topology is None  # still JOINED: nothing dropped


def test_a_joining_node_that_knows_only_part_of_the_cluster_drops_nobody():
    partial = topo(shard(7001, [(0, 5460)], 7004), shard(7007, []))  # 7007 heard only of 7001 yet
    views = [view(7001, JOINED, **EPOCHS), view(7002, JOINED, **EPOCHS), view(7007, partial, **EPOCHS)]
    d = decide(JOINED, views, final=True)
    assert d.topology is None


def test_a_node_whose_role_the_views_dispute_is_asked_and_its_own_word_wins():
    as_replica = topo(shard(7001, [(0, 5460)], 7004, 7007), *BASE.shards[1:])  # 7007 now replicates 7001
    views = [view(7001, as_replica, **EPOCHS), view(7002, JOINED, **EPOCHS)]
    d = decide(JOINED, views, asked=[name(7001), name(7002)])
    assert d.ask == (name(7007),)
    final = decide(JOINED, views + [view(7007, as_replica, **EPOCHS)], final=True)
    assert final.topology.by_name[name(7007)].role == REPLICA


def test_handshake_nodes_are_not_members():
    nodes_reply = (
        "id7001 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n"
        "idXYZ 127.0.0.1:7007@17007 handshake - 0 0 0 connected\n"
    )
    epochs, excluded = parse_epochs(nodes_reply.encode())
    assert epochs == {"id7001": 1} and excluded == {"idXYZ"}
    t = topo(*BASE.shards, Shard((), Node(H, 7007, PRIMARY, "idXYZ"), (), "idXYZ"))
    v = make_view(name(7001), t, epochs, excluded)
    assert names(v.topology) == names(BASE)


# ---------------------------------------------------------------- forgets


def test_a_node_every_other_node_forgot_is_dropped_even_while_it_runs():
    views = [view(p, BASE, **EPOCHS) for p in (7001, 7002, 7003)] + [view(7007, JOINED, **EPOCHS)]
    d = decide(JOINED, views, final=True)
    assert names(d.topology) == names(BASE)


def test_a_node_some_nodes_still_list_is_kept_while_it_answers():
    views = [view(7001, JOINED, **EPOCHS), view(7002, BASE, **EPOCHS), view(7003, BASE, **EPOCHS),
             view(7007, JOINED, **EPOCHS)]
    assert decide(JOINED, views, final=True).topology is None


def test_a_silent_node_most_nodes_forgot_is_dropped():
    views = [view(7001, JOINED, **EPOCHS), view(7002, BASE, **EPOCHS), view(7003, BASE, **EPOCHS)]
    d = decide(JOINED, views, silent=[name(7007)], final=True)
    assert names(d.topology) == names(BASE)


def test_a_silent_node_most_nodes_still_list_is_kept():
    views = [view(7001, JOINED, **EPOCHS), view(7002, JOINED, **EPOCHS), view(7003, BASE, **EPOCHS)]
    assert decide(JOINED, views, silent=[name(7007)], final=True).topology is None


def test_a_view_missing_a_member_makes_the_refresh_ask_every_member():
    d = decide(JOINED, [view(7002, BASE, **EPOCHS)], asked=[name(7002)])
    assert set(d.ask) == names(JOINED) - {name(7002)}


# ---------------------------------------------------------------- failover


PROMOTED = topo(
    Shard(((0, 5460),), node(7004), (), "id7004"),
    shard(7002, [(5461, 10922)], 7005),
    shard(7003, [(10923, 16383)], 7006),
)


def failed_primary_view():
    """A view that marked 7001 failed and has no successor yet: the shard has no primary."""
    return topo(Shard(((0, 5460),), None, (node(7004, REPLICA),), "id7001"), *BASE.shards[1:])


def test_the_promoted_replica_wins_over_views_that_have_not_heard_yet():
    views = [
        view(7004, PROMOTED, e7004=4, e7002=2, e7003=3),  # the promoted node knows first
        view(7002, BASE, **EPOCHS),  # still thinks 7001 owns the slots
        view(7003, failed_primary_view(), **EPOCHS),  # marked 7001 failed, no successor known
    ]
    d = decide(BASE, views, silent=[name(7001)], final=True)
    t = d.topology
    assert t.slot_table[0].primary.name == name(7004)
    assert name(7001) not in names(t)
    assert t.covered == 16384


def test_a_failing_primary_missing_from_the_promoted_view_costs_no_second_round():
    views = [view(7004, PROMOTED, e7004=4, e7002=2, e7003=3), view(7002, BASE, **EPOCHS)]
    d = decide(BASE, views, silent=[name(7001)], asked=[name(7004), name(7002)])
    assert not d.ask and d.topology.slot_table[0].primary.name == name(7004)


def test_a_partitioned_old_primary_with_an_old_epoch_loses_its_slots():
    views = [
        view(7001, BASE, **EPOCHS),  # cut off: still believes it is primary at epoch 1
        view(7004, PROMOTED, e7001=1, e7004=4, e7002=2, e7003=3),
        view(7002, PROMOTED, e7001=1, e7004=4, e7002=2, e7003=3),
    ]
    t = decide(BASE, views, final=True).topology
    assert t.slot_table[0].primary.name == name(7004)
    assert name(7001) not in t.by_name or t.by_name[name(7001)].role == REPLICA or not any(
        s.primary and s.primary.name == name(7001) and s.slots for s in t.shards
    )


def test_a_failed_primary_that_comes_back_as_a_replica_follows_its_new_primary():
    back = topo(
        Shard(((0, 5460),), node(7004), (node(7001, REPLICA),), "id7004"),
        *PROMOTED.shards[1:],
    )
    views = [view(7001, back, e7004=4, e7002=2, e7003=3), view(7004, back, e7004=4, e7002=2, e7003=3)]
    t = decide(PROMOTED, views, final=True).topology
    assert t.slot_table[0].primary.name == name(7004)
    assert [r.name for r in t.slot_table[0].replicas] == [name(7001)]


def test_a_map_covering_fewer_slots_needs_two_answers():
    d = decide(BASE, [view(7003, failed_primary_view(), **EPOCHS)], final=True)
    assert d.topology is None
    d2 = decide(BASE, [view(7003, failed_primary_view(), **EPOCHS), view(7002, failed_primary_view(), **EPOCHS)],
                silent=[name(7001)], final=True)
    assert d2.topology is not None and d2.topology.covered == 16384 - 5461


def test_replicas_of_a_failed_primary_are_kept_while_no_successor_is_known():
    views = [view(p, failed_primary_view(), **EPOCHS) for p in (7002, 7003)]
    t = decide(BASE, views, silent=[name(7001)], final=True).topology
    assert name(7004) in t.by_name and t.by_name[name(7004)].role == REPLICA


# ---------------------------------------------------------------- migration


def test_the_importing_node_wins_a_slot_once_its_epoch_is_bumped():
    imported = topo(shard(7001, [(0, 99), (101, 5460)], 7004), shard(7002, [(100, 100), (5461, 10922)], 7005),
                    BASE.shards[2])
    views = [view(7002, imported, e7001=1, e7002=7, e7003=3), view(7001, BASE, **EPOCHS), view(7003, BASE, **EPOCHS)]
    t = decide(BASE, views, final=True).topology
    assert t.slot_table[100].primary.name == name(7002)
    assert t.slot_table[99].primary.name == name(7001)


def test_equal_epochs_go_to_the_owner_most_views_name():
    other = topo(shard(7001, [(0, 5459)], 7004), shard(7002, [(5460, 10922)], 7005), BASE.shards[2])
    views = [view(7001, other), view(7002, BASE), view(7003, BASE)]  # no epochs known (CLUSTER SLOTS)
    t = merge(BASE, views)
    assert t.slot_table[5460].primary.name == name(7001)


# ---------------------------------------------------------------- slots nobody serves

# slot 16000 deleted on every node (CLUSTER DELSLOTS), but 7001 re-learnt 7003 as its owner
# from 7003's gossip in between and keeps naming it: 7003 itself serves no such slot
UNSERVED = topo(BASE.shards[0], BASE.shards[1], shard(7003, [(10923, 15999), (16001, 16383)], 7006))


def test_a_claim_the_named_owner_denies_is_ignored():
    views = [view(7001, BASE, **EPOCHS), view(7002, UNSERVED, **EPOCHS), view(7003, UNSERVED, **EPOCHS)]
    assert merge(UNSERVED, views).slot_table[16000] is None


def test_views_disagreeing_on_a_slot_ask_its_named_owner():
    views = [view(7001, BASE, **EPOCHS), view(7002, UNSERVED, **EPOCHS)]
    d = decide(UNSERVED, views, asked=[name(7001), name(7002)])
    assert d.topology is None and d.ask == (name(7003),)


def test_a_stale_claim_is_kept_while_its_owner_has_not_answered():
    views = [view(7001, BASE, **EPOCHS), view(7002, UNSERVED, **EPOCHS)]
    t = decide(UNSERVED, views, asked=[name(7001), name(7002), name(7003)], silent=[name(7003)]).topology
    assert t is not None and t.slot_table[16000].primary.name == name(7003)


def test_views_naming_different_owners_ask_nobody_more():
    promoted = topo(BASE.shards[0], BASE.shards[1], shard(7006, [(10923, 16383)]), shard(7003, []))
    views = [view(7001, BASE, **EPOCHS), view(7006, promoted, e7001=1, e7002=2, e7003=3, e7006=4)]
    d = decide(BASE, views, asked=[name(7001), name(7006)])
    assert name(7003) not in d.ask  # the old owner may be the paused node: epochs decide
