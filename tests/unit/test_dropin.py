"""Pure parts of the drop-in surface: node handles, callback composition, RedisCluster's cluster parsers."""

from __future__ import annotations

import pytest
from redis import cluster as rc

from clusterpool.callbacks import compose, cluster_callbacks
from clusterpool.handles import node_name_of
from clusterpool.nodeapi import ClusterNode


def test_node_handle_shows_host_port_name_server_type():
    n = ClusterNode("10.0.0.1", 7000, "replica", None)
    assert (n.host, n.port, n.name, n.server_type) == ("10.0.0.1", 7000, "10.0.0.1:7000", "replica")
    assert repr(n) == "[host=10.0.0.1,port=7000,name=10.0.0.1:7000,server_type=replica]"


def test_node_handles_compare_by_address():
    a = ClusterNode("10.0.0.1", 7000, "primary", None)
    b = ClusterNode("10.0.0.1", 7000, "replica", None)
    assert a == b and hash(a) == hash(b)
    assert a != ClusterNode("10.0.0.1", 7001, "primary", None)
    assert a == rc.ClusterNode("10.0.0.1", 7000) and a != "10.0.0.1:7000"


def test_node_handle_is_frozen():
    n = ClusterNode("10.0.0.1", 7000, "primary", None)
    with pytest.raises(AttributeError):
        n.port = 1


def test_node_name_of_every_form():
    assert node_name_of("h:1") == "h:1"
    assert node_name_of(rc.ClusterNode("10.0.0.2", 2)) == "10.0.0.2:2"

    class HostPort:
        host, port = "h", 3

    assert node_name_of(HostPort()) == "h:3"


def test_node_name_of_something_else_is_a_type_error():
    with pytest.raises(TypeError, match="target_nodes type"):
        node_name_of(3.5)


def test_compose_applies_the_custom_callback_after_the_standard_one():
    both = compose(lambda r, **kw: r + 1, lambda r, **kw: r * 10)
    assert both(1) == 20


def test_compose_without_a_standard_callback_is_the_custom_one():
    def outer(r, **kw):
        return r

    assert compose(None, outer) is outer


def test_cluster_callbacks_per_protocol():
    assert cluster_callbacks(None, True)["CLUSTER SHARDS"] is rc.parse_cluster_shards_with_str_keys
    assert cluster_callbacks(3, True)["CLUSTER SHARDS"] is rc.parse_cluster_shards
    assert cluster_callbacks(3, False)["CLUSTER SHARDS"] is rc.parse_cluster_shards_unified
    assert cluster_callbacks(2, True)["CLUSTER SLOTS"] is rc.parse_cluster_slots
