"""routes.py: RedisCluster's keyless routing table and reply shapes, read as data."""

from __future__ import annotations

from redis.cluster import RedisCluster

from clusterpool import routes


def test_route_name_is_redisclusters_spelling():
    assert routes.route_name("latency|latest") == "LATENCY LATEST"
    assert routes.route_name("get") == "GET"


def test_every_redisclusters_flag_is_kept_except_our_listed_differences():
    for name, flag in RedisCluster.COMMAND_FLAGS.items():
        assert routes.target_of(name) == routes.OURS.get(name, flag)


def test_our_differences_only_widen_the_nodes_asked():
    assert set(routes.OURS.values()) <= {routes.PRIMARIES, routes.ALL_NODES}


def test_latency_latest_goes_to_the_default_node():
    assert routes.target_of("LATENCY LATEST") == routes.DEFAULT_NODE


def test_slot_commands_go_by_their_slot_argument():
    assert routes.target_of("CLUSTER COUNTKEYSINSLOT") == routes.SLOT


def test_command_without_an_entry_has_no_route():
    assert routes.target_of("ECHO") is None


def test_shape_one_reply_without_callback_is_the_reply():
    assert routes.shape("CLUSTER INFO", {"a:1": {"x": 1}}) == {"x": 1}


def test_shape_several_replies_without_callback_is_per_node():
    assert routes.shape("FLUSHALL", {"a:1": True, "b:2": True}) == {"a:1": True, "b:2": True}


def test_shape_sums_dbsize():
    assert routes.shape("DBSIZE", {"a:1": 2, "b:2": 3}) == 5


def test_shape_concatenates_keys():
    assert sorted(routes.shape("KEYS", {"a:1": [b"x"], "b:2": [b"y"]})) == [b"x", b"y"]


def test_shape_pubsub_numsub_adds_counts_per_channel():
    got = routes.shape("PUBSUB NUMSUB", {"a:1": [(b"c", 1)], "b:2": [(b"c", 2)]})
    assert got == [(b"c", 3)]


def test_shape_ping_is_true_only_when_all_answer():
    assert routes.shape("PING", {"a:1": True, "b:2": True}) is True
    assert routes.shape("PING", {"a:1": True, "b:2": False}) is False


def test_shape_script_exists_is_and_per_script():
    assert routes.shape("SCRIPT EXISTS", {"a:1": [True, False], "b:2": [True, True]}) == [True, False]
