"""clusterpool.changewatch: the CLUSTER INFO digest and when it asks for a refresh."""

from __future__ import annotations

from clusterpool.changewatch import Watch, digest, observe, watch_target
from clusterpool.topology import Node, Shard, Topology

INFO = """cluster_state:ok\r
cluster_slots_assigned:16384\r
cluster_slots_ok:16384\r
cluster_slots_pfail:0\r
cluster_slots_fail:0\r
cluster_known_nodes:6\r
cluster_size:3\r
cluster_current_epoch:6\r
cluster_my_epoch:1\r
cluster_stats_messages_ping_sent:3956\r
"""


def info(**changes):
    text = INFO
    for k, v in changes.items():
        text = "\n".join(f"{k}:{v}" if line.startswith(f"{k}:") else line for line in text.splitlines())
    return text


def test_the_digest_ignores_message_counters_and_my_epoch():
    assert digest(INFO) == digest(info(cluster_stats_messages_ping_sent=9999, cluster_my_epoch=4))


def test_the_digest_moves_with_the_epoch_the_nodes_and_the_slot_states():
    for change in ({"cluster_current_epoch": 7}, {"cluster_known_nodes": 7}, {"cluster_slots_pfail": 5461},
                   {"cluster_slots_fail": 5461}, {"cluster_state": "fail"}):
        assert digest(info(**change)) != digest(INFO), change


def settled(node="a:1"):
    w, _ = observe(Watch(), node, INFO)
    w, _ = observe(w, node, INFO)
    return w


def test_a_still_digest_asks_nothing():
    w = settled()
    assert observe(w, "a:1", INFO)[1] is False


def test_a_moved_digest_refreshes_now_and_once_more_when_it_stops_moving():
    w, refresh = observe(settled(), "a:1", info(cluster_current_epoch=7))
    assert refresh
    w, refresh = observe(w, "a:1", info(cluster_current_epoch=8))  # still moving
    assert refresh
    w, refresh = observe(w, "a:1", info(cluster_current_epoch=8))  # stopped: the settling refresh
    assert refresh
    assert observe(w, "a:1", info(cluster_current_epoch=8))[1] is False


def test_a_first_answer_refreshes_then_settles():
    w, refresh = observe(Watch(), "a:1", INFO)
    assert refresh  # the change may have come between the map and this first answer
    w, refresh = observe(w, "a:1", INFO)
    assert refresh
    assert observe(w, "a:1", INFO)[1] is False


def test_another_node_answering_is_a_new_baseline_not_a_comparison():
    w = settled("a:1")
    w, refresh = observe(w, "b:2", info(cluster_slots_pfail=10))
    assert refresh and w.node == "b:2"
    w, _ = observe(w, "b:2", info(cluster_slots_pfail=10))
    assert observe(w, "b:2", info(cluster_slots_pfail=10))[1] is False


def topology():
    a, b = Node("h", 1, "primary", "a"), Node("h", 2, "primary", "b")
    ra = Node("h", 3, "replica", "c")
    return Topology((Shard(((0, 8191),), a, (ra,)), Shard(((8192, 16383),), b, ())), source="test")


def test_the_target_is_a_stable_usable_primary():
    t = topology()
    assert watch_target(t, set()) == "h:1"
    assert watch_target(t, {"h:1"}) == "h:2"
    assert watch_target(t, set(), previous="h:2") == "h:2"
    assert watch_target(t, set(), previous="h:3") == "h:1"  # a replica now: back to the first primary
    assert watch_target(None, set()) is None
    assert watch_target(t, {"h:1", "h:2"}) is None
