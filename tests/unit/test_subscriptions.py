"""subscriptions.py: where pub/sub subscriptions live, what moves, and how messages are shaped (no server)."""

from __future__ import annotations

import pytest
from redis.exceptions import DataError, PubSubError

from clusterpool import subscriptions as s
from clusterpool.slots import slot_of
from clusterpool.topology import PRIMARY, REPLICA, Node, Shard, Topology

H = "127.0.0.1"


def node(port, role=PRIMARY):
    return Node(H, port, role, id=f"id{port}")


def topo(*owners):
    """`owners`: (primary port or None, [(start, end), ...]) per shard."""
    return Topology(tuple(Shard(tuple(r), node(p) if p else None, (node(p + 3, REPLICA),) if p else ())
                          for p, r in owners))


BASE = topo((7001, [(0, 5460)]), (7002, [(5461, 10922)]), (7003, [(10923, 16383)]))


def channel_in(lo, hi, prefix="ch"):
    i = 0
    while not lo <= slot_of(f"{prefix}{i}") <= hi:
        i += 1
    return f"{prefix}{i}"


A = channel_in(0, 5460)
B = channel_in(5461, 10922)
C = channel_in(10923, 16383)


# ---------------------------------------------------------------- where subscriptions live


def test_shard_owner_is_the_primary_of_the_channels_slot():
    assert [s.shard_owner(BASE, ch) for ch in (A, B, C)] == [f"{H}:7001", f"{H}:7002", f"{H}:7003"]


def test_shard_owner_is_unknown_without_a_map_or_a_primary():
    assert s.shard_owner(None, A) == ""
    assert s.shard_owner(topo((None, [(0, 16383)])), A) == ""
    assert s.shard_owner(topo((7002, [(5461, 10922)])), A) == ""  # slot not covered


def test_by_slot_groups_in_the_order_given():
    twin = channel_in(slot_of(A), slot_of(A), prefix="twin")
    got = s.by_slot({A: 1, B: 2, twin: 3})
    assert got == {slot_of(A): {A: 1, twin: 3}, slot_of(B): {B: 2}}
    assert list(got[slot_of(A)]) == [A, twin]


def first(live):
    return live[0]


def test_classic_node_prefers_the_pinned_node():
    assert s.classic_node("p:1", "", "o:1", ["l:1"], first) == "p:1"


def test_classic_node_avoids_a_pinned_node_that_was_lost():
    assert s.classic_node("p:1", "p:1", "o:1", ["l:1"], first) == "o:1"


def test_classic_node_then_the_first_channels_owner_then_a_live_primary():
    assert s.classic_node("", "", "o:1", ["l:1"], first) == "o:1"
    assert s.classic_node("", "o:1", "o:1", ["l:1"], first) == "l:1"
    assert s.classic_node("", "", "", ["l:1", "l:2"], lambda live: live[-1]) == "l:2"


def test_classic_node_is_empty_without_any_primary():
    assert s.classic_node("", "", "", [], first) == ""


def test_classic_candidates_try_the_owner_then_the_old_node_then_the_others_once_each():
    assert s.classic_candidates("", "o:1", "old:1", ["x:1", "o:1", "old:1", "y:1"]) == ["o:1", "old:1", "x:1", "y:1"]


def test_classic_candidates_put_the_pinned_node_first():
    assert s.classic_candidates("p:1", "o:1", "", ["x:1"]) == ["p:1", "x:1"]


def test_moved_shard_channels_are_those_whose_owner_is_another_node():
    moved_b = topo((7001, [(0, 10922)]), (7003, [(10923, 16383)]))  # 7002's slots went to 7001
    held = {f"{H}:7001": [A], f"{H}:7002": [B], f"{H}:7003": [C]}
    assert s.moved_shard_channels(held, lambda ch: s.shard_owner(moved_b, ch)) == {f"{H}:7002": [B]}


def test_moved_shard_channels_keep_a_channel_whose_owner_is_unknown():
    held = {f"{H}:7001": [A]}
    assert s.moved_shard_channels(held, lambda ch: "") == {}


def test_plan_sunsubscribe_all_skips_pending_ones():
    held = {"n:1": [A, B], "n:2": [C]}
    assert s.plan_sunsubscribe(None, held, [B], lambda ch: "", str) == {"n:1": [A], "n:2": [C]}


def test_plan_sunsubscribe_names_go_to_their_holder_or_the_owner_we_are_connected_to():
    held = {"n:1": [A], "n:2": [C]}
    owner = {B: "n:2", "other": "n:9"}.get
    plan = s.plan_sunsubscribe([A, B, "other"], held, [], lambda ch: owner(ch, ""), str)
    assert plan == {"n:1": [A], "n:2": [B]}  # "other"'s owner has no connection of ours: nothing sent


def test_plan_sunsubscribe_matches_normalised_names():
    held = {"n:1": ["ch"]}
    assert s.plan_sunsubscribe([b"ch"], held, [], lambda ch: "", lambda c: c.decode()) == {"n:1": [b"ch"]}


def test_a_sunsubscribe_nobody_asked_for_is_the_server_dropping_the_channel():
    awaited = s.AwaitedSunsubscribes()
    assert awaited.server_unsubscribed([b"sunsubscribe", b"x", 0]) == b"x"
    assert awaited.server_unsubscribed([b"unsubscribe", b"x", 0]) is None
    assert awaited.server_unsubscribed([b"ssubscribe", b"x", 1]) is None
    assert awaited.server_unsubscribed(b"PONG") is None


def test_each_sunsubscribe_sent_is_confirmed_once():
    awaited = s.AwaitedSunsubscribes()
    awaited.sent(b"x")
    awaited.sent(b"x")
    got = [awaited.server_unsubscribed([b"sunsubscribe", b"x", 0]) for _ in range(3)]
    assert got == [None, None, b"x"]  # two confirmations of ours, then one from the server
    assert not awaited


def test_a_resubscribe_does_not_turn_the_awaited_confirmation_into_a_server_drop():
    """SSUBSCRIBE x, SUNSUBSCRIBE x, SSUBSCRIBE x: the middle confirmation is still ours
    (redis-py's pending set forgot it at the second SSUBSCRIBE)."""
    awaited = s.AwaitedSunsubscribes()
    awaited.sent("x")
    assert awaited.server_unsubscribed(["sunsubscribe", "x", 0]) is None


def test_clearing_forgets_every_awaited_confirmation():
    awaited = s.AwaitedSunsubscribes()
    awaited.sent(b"x")
    awaited.clear()
    assert awaited.server_unsubscribed([b"sunsubscribe", b"x", 0]) == b"x"


def test_forget_drops_names_as_written_or_normalised():
    lost = {"a": 1, "b": 2, "c": 3}
    assert s.forget(lost, [b"a", "c"], lambda n: n.decode() if isinstance(n, bytes) else n) == {"b": 2}
    assert s.forget(lost, None, str) == {}
    assert lost == {"a": 1, "b": 2, "c": 3}  # a new dict: the input is not changed


@pytest.mark.parametrize("kind", ["channels", "patterns", "shard_channels"])
def test_missing_handler_names_the_subscription(kind):
    subs = {"channels": {}, "patterns": {}, "shard_channels": {}}
    subs[kind] = {"ok": print, "bare": None}
    err = s.missing_handler(**subs)
    assert isinstance(err, PubSubError) and "'bare' has no handler registered" in str(err)


def test_missing_handler_is_none_when_every_subscription_has_one():
    assert s.missing_handler({"a": print}, {"p*": print}, {}) is None


# ---------------------------------------------------------------- messages


def test_message_shapes_are_redis_pys():
    assert s.message_of([b"message", b"c", b"d"]) == {"type": "message", "pattern": None, "channel": b"c", "data": b"d"}
    assert s.message_of([b"pmessage", b"p*", b"pc", b"d"]) == {
        "type": "pmessage", "pattern": b"p*", "channel": b"pc", "data": b"d"}
    assert s.message_of(["smessage", "c", "d"]) == {"type": "smessage", "pattern": None, "channel": "c", "data": "d"}
    assert s.message_of([b"ssubscribe", b"c", 1]) == {"type": "ssubscribe", "pattern": None, "channel": b"c", "data": 1}


def test_pong_messages_in_and_out_of_subscribed_mode():
    assert s.message_of([b"pong", b"hi"]) == {"type": "pong", "pattern": None, "channel": None, "data": b"hi"}
    assert s.message_of(b"PONG")["data"] == b""
    assert s.message_of("PONG")["data"] == ""


def test_handler_for_looks_in_the_registry_of_the_message_kind():
    chans, pats, shards = {b"c": "ch"}, {b"p*": "pat"}, {b"c": "shard"}
    assert s.handler_for(s.message_of([b"message", b"c", b"d"]), chans, pats, shards) == "ch"
    assert s.handler_for(s.message_of([b"pmessage", b"p*", b"c", b"d"]), chans, pats, shards) == "pat"
    assert s.handler_for(s.message_of([b"smessage", b"c", b"d"]), chans, pats, shards) == "shard"
    assert s.handler_for(s.message_of([b"subscribe", b"c", 1]), chans, pats, shards) is None
    assert s.handler_for(s.message_of([b"message", b"other", b"d"]), chans, pats, shards) is None


def test_hidden_are_confirmations_when_ignored_never_pongs_or_messages():
    assert all(s.hidden(t, True) for t in s.SUBSCRIBE_MESSAGE_TYPES)
    assert not any(s.hidden(t, False) for t in s.SUBSCRIBE_MESSAGE_TYPES)
    assert not any(s.hidden(t, True) for t in (*s.PUBLISH_MESSAGE_TYPES, "pong"))


def test_kind_of_message_types():
    assert [s.kind_of(t) for t in ("unsubscribe", "pmessage", "sunsubscribe", "pong")] == [
        s.CHANNEL, s.PATTERN, s.SHARD, ""]


def test_pinned_name_from_a_node_a_host_and_port_or_nothing():
    class N:
        host, port = "10.0.0.1", 7000

    assert s.pinned_name(N()) == "10.0.0.1:7000"
    assert s.pinned_name(host="10.0.0.2", port=7001) == "10.0.0.2:7001"
    assert s.pinned_name() == ""
    with pytest.raises(DataError, match="requires passing a port"):
        s.pinned_name(host="10.0.0.2")
