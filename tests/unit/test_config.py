"""clusterpool.config.Config: every option spelled once, checked in the constructor (no server)."""

from __future__ import annotations

import os
import re
from dataclasses import fields

import pytest

from clusterpool import ClusterClient, Config, ConfigurationError
from clusterpool.readfrom import REPLICA

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def build(**options):
    return Config.build("127.0.0.1", 7000, None, options)


def test_every_option_is_in_the_readme_table():
    with open(README) as f:
        documented = set(re.findall(r"`([a-z_]+)`", "\n".join(re.findall(r"^\| `.*?\|", f.read(), re.M))))
    options = {f.name for f in fields(Config)} - {"startup_nodes", "connection"}
    assert options - documented == set()


def test_every_option_can_be_set_from_the_client():
    client = ClusterClient("127.0.0.1", 7000, refresh_timeout=0.3, health_interval=0.5, min_idle=2)
    try:
        assert client.config.refresh_timeout == 0.3
        assert client.config.health_interval == 0.5 and client.config.min_idle == 2
    finally:
        client.close()


def test_unknown_option_is_named():
    with pytest.raises(ConfigurationError, match="refresh_timout"):
        build(refresh_timout=1)


@pytest.mark.parametrize(
    "options,fragment",
    [
        ({"db": 1}, "database 0"),
        ({"max_redirections": 0}, "max_redirections"),
        ({"retry_timeout": 0}, "retry_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"refresh_timeout": -1}, "refresh_timeout"),
        ({"min_idle": 100, "max_connections": 10}, "min_idle"),
    ],
)
def test_bad_values_fail_before_anything_is_sent(options, fragment):
    with pytest.raises(ConfigurationError, match=fragment):
        build(**options)


def test_no_startup_node_is_an_error():
    with pytest.raises(ConfigurationError, match="no startup nodes"):
        Config.build(None, 6379, [], {})


def test_redis_cluster_spellings_map_to_ours():
    c = build(read_from_replicas=True, max_connections=None, address_remap=lambda hp: ("10.0.0.1", hp[1]))
    assert c.read_from == REPLICA
    assert c.max_connections >= 2**31
    assert c.address_map("h", 7001) == ("10.0.0.1", 7001)


def test_connection_keywords_go_to_redis_py_and_get_our_defaults():
    c = build(password="pw", socket_timeout=2)
    assert c.connection["password"] == "pw" and c.connection["socket_timeout"] == 2
    assert c.connection["socket_connect_timeout"] == 2.0 and "driver_info" in c.connection


def test_none_keeps_a_default_unless_it_means_no_limit():
    c = build(retry=None, pool_timeout=None, retry_timeout=None)
    assert c.retry is not None and c.pool_timeout is None


def test_the_config_is_frozen():
    c = build()
    with pytest.raises(AttributeError):
        c.max_connections = 3  # type: ignore[misc]


# ---- RedisCluster keywords for features clusterpool lacks: never dropped in silence


@pytest.mark.parametrize("name", ["policy_resolver", "metadata_resolver",
                                  "maint_notifications_config", "event_dispatcher"])
def test_a_keyword_asking_for_a_missing_feature_is_refused_naming_it(name):
    with pytest.raises(ConfigurationError, match=f"^{name}=.*(drop the option|pass None)"):
        build(**{name: object()})


@pytest.mark.parametrize("name", ["cache", "cache_config", "policy_resolver", "metadata_resolver",
                                  "maint_notifications_config", "event_dispatcher"])
def test_a_keyword_asking_for_nothing_is_accepted(name):
    assert build(**{name: None}).refresh_min_gap == 0.2


def test_disabled_maintenance_notifications_are_accepted():
    from redis.maint_notifications import MaintNotificationsConfig

    build(maint_notifications_config=MaintNotificationsConfig(enabled=False))
    with pytest.raises(ConfigurationError, match="maintenance notifications"):
        build(maint_notifications_config=MaintNotificationsConfig(enabled=True))


def test_topology_refresh_min_interval_sets_the_refresh_gap():
    assert build(topology_refresh_min_interval=1.5).refresh_min_gap == 1.5
    assert build(topology_refresh_min_interval=0).refresh_min_gap == 0


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan"), "1"])
def test_a_refresh_gap_that_is_not_a_finite_non_negative_number_is_refused(bad):
    with pytest.raises(ConfigurationError, match="refresh_min_gap"):
        build(topology_refresh_min_interval=bad)
