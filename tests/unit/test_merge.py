"""clusterpool.merge: one value from several nodes' replies."""

from __future__ import annotations

from clusterpool.merge import MERGERS, merge


def test_agg_sum_adds_replies():
    assert merge("agg_sum", {"a:1": 3, "b:2": 4, "c:3": 0}) == 7


def test_agg_min_and_max():
    assert merge("agg_min", {"a": 3, "b": 1}) == 1
    assert merge("agg_max", {"a": 3, "b": 1}) == 3


def test_all_succeeded_true_when_every_reply_true():
    assert merge("all_succeeded", {"a": True, "b": True}) is True


def test_all_succeeded_returns_first_non_true_reply_set():
    assert merge("all_succeeded", {"a": "OK", "b": "OK"}) == "OK"


def test_all_succeeded_with_no_replies_is_true():
    assert merge("all_succeeded", {}) is True


def test_one_succeeded_returns_first_reply():
    assert merge("one_succeeded", {"a": "first", "b": "second"}) == "first"


def test_one_succeeded_with_no_replies_is_none():
    assert merge("one_succeeded", {}) is None


def test_agg_logical_and_on_lists_is_per_position():
    replies = {"a": [True, True, False, 1], "b": [True, False, False, 1], "c": [True, True, True, 1]}
    assert merge("agg_logical_and", replies) == [True, False, False, True]


def test_agg_logical_and_on_scalars():
    assert merge("agg_logical_and", {"a": 1, "b": 1}) is True
    assert merge("agg_logical_and", {"a": 1, "b": 0}) is False


def test_agg_logical_or_on_lists_is_per_position():
    assert merge("agg_logical_or", {"a": [0, 0, 1], "b": [0, 1, 0]}) == [False, True, True]


def test_concat_joins_lists_in_node_order():
    assert merge("concat", {"a": [b"k1", b"k2"], "b": [], "c": [b"k3"]}) == [b"k1", b"k2", b"k3"]


def test_concat_treats_none_as_empty():
    assert merge("concat", {"a": None, "b": [1]}) == [1]


def test_per_node_returns_dict_copy():
    replies = {"a:1": "x", "b:2": "y"}
    out = merge("per_node", replies)
    assert out == replies
    assert out is not replies


def test_none_policy_with_one_reply_returns_the_reply():
    assert merge(None, {"a:1": [1, 2]}) == [1, 2]


def test_none_policy_with_several_replies_returns_dict():
    replies = {"a:1": 1, "b:2": 2}
    assert merge(None, replies) == replies


def test_unknown_policy_behaves_like_none():
    assert merge("nosuch", {"a": 5}) == 5
    assert merge("nosuch", {"a": 5, "b": 6}) == {"a": 5, "b": 6}


def test_every_named_policy_is_callable():
    for name, fn in MERGERS.items():
        assert callable(fn), name
