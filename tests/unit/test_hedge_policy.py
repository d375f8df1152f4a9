"""clusterpool.hedging: the hedge policy, its budget, the delay and the second node (pure)."""

from __future__ import annotations

import pytest

from clusterpool.errors import ConfigurationError
from clusterpool.hedging import (RECOMPUTE_EVERY, HedgeBudget, Hedger, HedgePolicy, hedge_policy,
                                 hedgeable, second_node)
from clusterpool.readfrom import NodeStates
from clusterpool.topology import PRIMARY, REPLICA, Node, Shard

P = Node("h", 1, PRIMARY, "p")
R1 = Node("h", 2, REPLICA, "r1")
R2 = Node("h", 3, REPLICA, "r2")
R3 = Node("h", 4, REPLICA, "r3")


def shard(*replicas):
    return Shard(((0, 16383),), P, tuple(replicas), "s1")


# ---------------------------------------------------------------- policy


@pytest.mark.parametrize("kw", [{"delay": -1}, {"delay": float("nan")}, {"percentile": 0}, {"percentile": 1.5},
                                {"floor": 0.5, "ceiling": 0.1}, {"budget": 2}, {"budget": -0.1}, {"window": 0},
                                {"burst": -1}, {"samples": 0}, {"min_samples": 300}, {"to_primary": "yes"},
                                {"delay": True}], ids=repr)
def test_a_bad_policy_value_is_a_configuration_error(kw):
    with pytest.raises(ConfigurationError, match="HedgePolicy"):
        HedgePolicy(**kw)


def test_a_fixed_delay_ignores_the_samples():
    assert HedgePolicy(delay=0.003).delay_for([1.0] * 100) == 0.003


def test_the_percentile_delay_waits_for_the_ceiling_until_enough_samples():
    assert HedgePolicy(ceiling=0.02, min_samples=20).delay_for([0.001] * 19) == 0.02


def test_the_percentile_delay_is_that_percentile_of_the_samples():
    samples = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    assert HedgePolicy(percentile=0.9, ceiling=1.0).delay_for(samples) == pytest.approx(0.090)


def test_the_percentile_delay_is_kept_within_floor_and_ceiling():
    policy = HedgePolicy(floor=0.002, ceiling=0.01)
    assert policy.delay_for([0.0001] * 50) == 0.002
    assert policy.delay_for([0.5] * 50) == 0.01


@pytest.mark.parametrize("value, expected", [(None, None), (False, None), (True, HedgePolicy())])
def test_the_hedge_option_reads_none_false_and_true(value, expected):
    assert hedge_policy(value) == expected


def test_the_hedge_option_takes_a_policy_as_it_is():
    policy = HedgePolicy(delay=0.01)
    assert hedge_policy(policy) is policy


def test_the_hedge_option_refuses_anything_else():
    with pytest.raises(ConfigurationError, match="hedge must be"):
        hedge_policy(0.01)


# ---------------------------------------------------------------- what is hedged


def test_only_reads_routed_by_a_read_strategy_are_hedgeable():
    assert hedgeable(True, frozenset({"readonly"}), to_primary=False)
    assert not hedgeable(False, frozenset({"write"}), to_primary=False)
    assert not hedgeable(True, frozenset({"readonly"}), to_primary=True)


def test_blocking_reads_are_not_hedgeable():
    assert not hedgeable(True, frozenset({"readonly", "blocking"}), to_primary=False)


# ---------------------------------------------------------------- second node


def test_the_hedge_goes_to_another_replica():
    assert second_node(shard(R1, R2), "h:2", NodeStates()) is R2


def test_the_hedge_never_goes_to_a_replica_that_is_down_or_lagging():
    assert second_node(shard(R1, R2, R3), "h:2", NodeStates(down=frozenset({"h:3"}))) is R3


def test_the_hedge_prefers_the_lowest_latency_replica():
    states = NodeStates(latency={"h:3": 0.004, "h:4": 0.001})
    assert second_node(shard(R1, R2, R3), "h:2", states) is R3


def test_the_hedge_prefers_a_replica_in_the_clients_zone():
    states = NodeStates(latency={"h:3": 0.001, "h:4": 0.004}, zones={"h:3": "b", "h:4": "a"})
    assert second_node(shard(R1, R2, R3), "h:2", states, zone="a") is R3


def test_with_no_other_replica_the_hedge_goes_to_the_primary():
    assert second_node(shard(R1), "h:2", NodeStates()) is P


def test_with_no_other_replica_and_to_primary_off_there_is_no_hedge():
    assert second_node(shard(R1), "h:2", NodeStates(), to_primary=False) is None


def test_a_read_on_the_primary_is_hedged_to_a_replica():
    assert second_node(shard(R1), "h:1", NodeStates()) is R1


def test_there_is_no_hedge_when_every_other_node_is_down():
    assert second_node(shard(R1), "h:2", NodeStates(down=frozenset({"h:1"}))) is None


# ---------------------------------------------------------------- budget


def test_the_budget_allows_the_burst_with_no_reads():
    b = HedgeBudget(0.05, 10.0, 2)
    assert [b.allow(0.0) for _ in range(3)] == [True, True, False]


def test_the_budget_allows_its_fraction_of_the_reads():
    b = HedgeBudget(0.05, 10.0, 0)
    for _ in range(100):
        b.read(1.0)
    assert sum(b.allow(1.0) for _ in range(10)) == 5


def test_the_budget_forgets_reads_and_hedges_older_than_the_window():
    b = HedgeBudget(0.5, 10.0, 0)
    for _ in range(10):
        b.read(0.0)
    assert sum(b.allow(0.5) for _ in range(10)) == 5
    assert not b.allow(10.5)  # the reads left the window with the hedges
    for _ in range(10):
        b.read(10.5)
    assert sum(b.allow(10.5) for _ in range(10)) == 5


def test_the_budget_slides_by_slices_of_the_window():
    b = HedgeBudget(1.0, 10.0, 0)
    b.read(0.0)
    b.read(5.0)
    assert b.allow(9.99) and b.allow(9.99) and not b.allow(9.99)
    assert not b.allow(10.5)  # the read at 0 is gone, the two hedges at 9.99 still count


# ---------------------------------------------------------------- the hedger


def test_the_hedger_counts_sent_won_and_suppressed():
    h = Hedger(HedgePolicy(budget=0.0, burst=1))
    h.read(0.0)
    assert h.try_hedge(0.0) and not h.try_hedge(0.0)
    h.won()
    s = h.stats()
    assert (s.reads, s.sent, s.won, s.suppressed) == (1, 1, 1, 1)
    assert s.extra == 1.0


def test_the_hedger_delay_follows_the_shards_recent_latency():
    h = Hedger(HedgePolicy(percentile=0.5, floor=0.0, ceiling=1.0, min_samples=RECOMPUTE_EVERY))
    assert h.delay("s1") == 1.0  # no samples yet: the ceiling
    for _ in range(RECOMPUTE_EVERY):
        h.timed("s1", "n", 0.004)
    assert h.delay("s1") == 0.004
    assert h.delay("s2") == 1.0


def test_a_node_slow_on_every_read_is_hedged_after_what_its_peers_take():
    h = Hedger(HedgePolicy(percentile=0.9, floor=0.0, ceiling=1.0, min_samples=RECOMPUTE_EVERY))
    for _ in range(RECOMPUTE_EVERY):
        h.timed("s1", "slow", 0.020)
        h.timed("s1", "fast", 0.001)
    assert h.delay("s1") == 0.001


def test_a_fixed_delay_is_the_same_for_every_shard():
    h = Hedger(HedgePolicy(delay=0.003))
    h.timed("s1", "n", 0.5)
    assert h.delay("s1") == h.delay("s2") == 0.003
