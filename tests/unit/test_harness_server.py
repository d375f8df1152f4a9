"""The harness's server choice (clusterpool.testing): redis or valkey, from the argument or
CLUSTERPOOL_TEST_SERVER, checked before any process starts (no server needed)."""

from __future__ import annotations

import pytest

from clusterpool.testing import LocalCluster
from clusterpool.testing.processes import SERVER_ENV, server_kind


def test_server_defaults_to_redis(monkeypatch):
    monkeypatch.delenv(SERVER_ENV, raising=False)
    assert server_kind() == "redis"
    assert LocalCluster().server == "redis"


def test_server_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(SERVER_ENV, "Valkey")
    assert LocalCluster().server == "valkey"
    assert LocalCluster(server="redis").server == "redis"  # the argument wins


def test_unknown_server_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(SERVER_ENV, "memcached")
    with pytest.raises(ValueError, match="redis.*valkey.*memcached"):
        LocalCluster()


def test_more_zones_than_nodes_are_refused():
    with pytest.raises(ValueError, match="7 zones for 6 nodes"):
        LocalCluster(primaries=3, replicas=1, zones=["az"] * 7)

