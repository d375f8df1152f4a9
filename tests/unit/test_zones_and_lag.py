"""Zone affinity and bounded staleness: readfrom's AZAffinity / LagBound / lagging and the INFO
parsing in clusterpool.replication (pure, no server)."""

from __future__ import annotations

from collections import Counter

import pytest

from clusterpool import ClusterClient, ConfigurationError
from clusterpool.readfrom import (
    AZ_AFFINITY,
    AZ_AFFINITY_REPLICAS_AND_PRIMARY,
    AZAffinity,
    LagBound,
    NodeStates,
    Replica,
    lagging,
    make_strategy,
    reader_strategy,
)
from clusterpool.replication import UNLINKED, Lag, info_fields, link_down, replica_lags, zone_of
from clusterpool.topology import PRIMARY, REPLICA, Node, Shard

P = Node("h", 1, PRIMARY, "p")
A1, A2, B1 = (Node("h", port, REPLICA, nid) for port, nid in ((2, "a1"), (3, "a2"), (4, "b1")))
SHARD = Shard(((0, 16383),), P, (A1, A2, B1), "s1")
ZONES = {A1.name: "az-a", A2.name: "az-a", B1.name: "az-b", P.name: "az-b"}


def picks(strategy, states, n=60):
    return Counter(strategy.pick(SHARD, states).name for _ in range(n))


# ---------------------------------------------------------------- AZAffinity


def test_az_affinity_reads_only_replicas_in_the_clients_zone():
    got = picks(AZAffinity("az-a"), NodeStates(zones=ZONES))
    assert got == {A1.name: 30, A2.name: 30}


def test_az_affinity_skips_a_down_replica_in_the_zone():
    got = picks(AZAffinity("az-a"), NodeStates(down=frozenset({A1.name}), zones=ZONES))
    assert got == {A2.name: 60}


def test_az_affinity_falls_to_any_replica_when_none_in_the_zone_is_usable():
    got = picks(AZAffinity("az-a"), NodeStates(down=frozenset({A1.name, A2.name}), zones=ZONES))
    assert got == {B1.name: 60}


def test_az_affinity_does_not_prefer_a_primary_in_the_zone():
    states = NodeStates(down=frozenset({A1.name, A2.name}), zones={**ZONES, P.name: "az-a"})
    assert picks(AZAffinity("az-a"), states) == {B1.name: 60}


def test_az_affinity_replicas_and_primary_takes_the_primary_in_the_zone_before_other_zones():
    states = NodeStates(down=frozenset({A1.name, A2.name}), zones={**ZONES, P.name: "az-a"})
    assert picks(AZAffinity("az-a", include_primary=True), states) == {P.name: 60}


def test_az_affinity_replicas_and_primary_skips_a_primary_in_another_zone():
    states = NodeStates(down=frozenset({A1.name, A2.name}), zones=ZONES)
    assert picks(AZAffinity("az-a", include_primary=True), states) == {B1.name: 60}


def test_az_affinity_falls_back_to_the_primary_when_no_replica_is_usable():
    states = NodeStates(down=frozenset({A1.name, A2.name, B1.name}), zones=ZONES)
    assert AZAffinity("az-a").pick(SHARD, states) is P


def test_az_affinity_with_no_zones_known_spreads_over_all_replicas():
    assert picks(AZAffinity("az-a"), NodeStates()) == {A1.name: 20, A2.name: 20, B1.name: 20}


def test_az_affinity_without_a_zone_is_refused():
    with pytest.raises(ValueError, match="client_az"):
        AZAffinity("")


@pytest.mark.parametrize("name, with_primary", [(AZ_AFFINITY, False), (AZ_AFFINITY_REPLICAS_AND_PRIMARY, True)])
def test_make_strategy_builds_zone_affinity_from_client_az(name, with_primary):
    s = make_strategy(name, "az-a")
    assert isinstance(s, AZAffinity) and s.zone == "az-a" and s.include_primary is with_primary
    assert s.name == name


def test_make_strategy_zone_affinity_needs_client_az():
    with pytest.raises(ValueError, match="client_az"):
        make_strategy(AZ_AFFINITY)


def test_reader_strategy_prefers_the_clients_zone_when_it_has_one():
    assert isinstance(reader_strategy("az-a"), AZAffinity)
    assert type(reader_strategy(None)) is Replica


# ---------------------------------------------------------------- LagBound / lagging

LAGS = {"fresh": Lag(0, 0), "behind": Lag(5000, 3), "unlinked": UNLINKED}


def test_no_bound_keeps_reads_on_every_replica_even_an_unlinked_one():
    assert lagging(LAGS, LagBound()) == frozenset()


def test_seconds_bound_keeps_reads_off_replicas_behind_it_and_unlinked_ones():
    assert lagging(LAGS, LagBound(seconds=2)) == {"behind", "unlinked"}
    assert lagging(LAGS, LagBound(seconds=3)) == {"unlinked"}


def test_bytes_bound_keeps_reads_off_replicas_behind_it():
    assert lagging(LAGS, LagBound(bytes=4999)) == {"behind", "unlinked"}
    assert lagging(LAGS, LagBound(bytes=5000)) == {"unlinked"}


def test_either_bound_exceeded_is_enough():
    assert LagBound(seconds=10, bytes=100).exceeded(Lag(5000, 0))
    assert LagBound(seconds=1, bytes=10**9).exceeded(Lag(5000, 2))


# ---------------------------------------------------------------- INFO parsing

PRIMARY_INFO = (
    "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n"
    "slave0:ip=h,port=2,state=online,offset=1000,lag=0\r\n"
    "slave1:ip=10.0.0.9,port=3,state=online,offset=400,lag=4\r\n"
    "slave2:ip=h,port=4,state=wait_bgsave,offset=0,lag=0\r\n"
    "master_repl_offset:1000\r\n"
)


def test_replica_lags_from_the_primarys_info():
    assert replica_lags(info_fields(PRIMARY_INFO), (A1, A2, B1)) == {
        A1.name: Lag(0, 0),  # caught up: the age of its last ack does not count
        A2.name: Lag(600, 4),  # seen from another address (NAT): matched by its port
        B1.name: UNLINKED,  # still syncing
    }


def test_a_replica_the_primary_does_not_list_is_unlinked():
    other = Node("h", 9, REPLICA, "x")
    assert replica_lags(info_fields(PRIMARY_INFO), (other,)) == {other.name: UNLINKED}


def test_replica_lags_of_a_replicas_reply_is_empty():
    assert replica_lags(info_fields("role:slave\r\nmaster_link_status:up\r\n"), (A1,)) == {}


def test_zone_of_reads_valkeys_availability_zone():
    assert zone_of(info_fields("# Server\r\nredis_version:7.2.4\r\navailability_zone:az-a\r\n")) == "az-a"
    assert zone_of(info_fields("# Server\r\nredis_version:7.0.15\r\n")) is None
    assert zone_of(info_fields("availability_zone:\r\n")) is None


def test_link_down_while_down_or_syncing():
    assert link_down(info_fields("master_link_status:down\r\n"))
    assert link_down(info_fields("master_link_status:up\r\nmaster_sync_in_progress:1\r\n"))
    assert not link_down(info_fields("master_link_status:up\r\nmaster_sync_in_progress:0\r\n"))


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("opts", [
    {"read_from": AZ_AFFINITY},
    {"client_az": ""},
    {"client_az": 5},
    {"max_replica_lag": -1},
    {"max_replica_lag": float("nan")},
    {"max_replica_lag_bytes": 1.5},
    {"max_replica_lag_bytes": -1},
], ids=repr)
def test_bad_zone_or_lag_options_fail_in_the_constructor(opts):
    with pytest.raises(ConfigurationError):
        ClusterClient("127.0.0.1", 7000, **opts)


def test_zone_and_lag_options_are_kept():
    c = ClusterClient("127.0.0.1", 7000, read_from=AZ_AFFINITY, client_az="az-a", max_replica_lag=2,
                      max_replica_lag_bytes=10_000)
    with c:
        assert c.read_from == AZ_AFFINITY
        assert c.config.lag_bound == LagBound(2, 10_000)
