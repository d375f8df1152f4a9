"""clusterpool.readfrom: read strategies (which node of a shard serves a read)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from clusterpool.readfrom import (
    Any_,
    Nearest,
    NodeStates,
    Primary,
    Replica,
    ReplicaPreferred,
    make_strategy,
    choose,
)
from clusterpool.topology import PRIMARY, REPLICA, Node, Shard

P = Node("h", 1, PRIMARY, "p")
R1 = Node("h", 2, REPLICA, "r1")
R2 = Node("h", 3, REPLICA, "r2")
NONE = NodeStates()


def shard(*replicas, primary=P, sid="s1"):
    return Shard(((0, 16383),), primary, tuple(replicas), sid)


# ---------------------------------------------------------------- make_strategy


@pytest.mark.parametrize(
    "name, cls",
    [("primary", Primary), ("replica", Replica), ("replica_preferred", ReplicaPreferred),
     ("any", Any_), ("nearest", Nearest), ("REPLICA", Replica)],
)
def test_make_strategy_by_name(name, cls):
    assert type(make_strategy(name)) is cls


def test_make_strategy_by_name_gives_fresh_instances():
    assert make_strategy("replica") is not make_strategy("replica")


def test_make_strategy_unknown_name_lists_names():
    with pytest.raises(ValueError) as ei:
        make_strategy("fastest")
    msg = str(ei.value)
    assert "fastest" in msg
    for name in ("primary", "replica", "replica_preferred", "any", "nearest"):
        assert name in msg


@pytest.mark.parametrize("bad", [42, None, 1.5, object()], ids=repr)
def test_make_strategy_non_callable_is_type_error(bad):
    with pytest.raises(TypeError):
        make_strategy(bad)


def test_make_strategy_passes_strategy_object_through():
    s = Replica()
    assert make_strategy(s) is s


def test_plain_callable_works_as_strategy():
    def last_replica(sh, states):
        return sh.replicas[-1]

    s = make_strategy(last_replica)
    assert s.pick(shard(R1, R2), NONE) is R2
    assert s.name == "last_replica"


def test_callable_returning_none_is_passed_through():
    assert make_strategy(lambda sh, st: None).pick(shard(R1), NONE) is None


# ---------------------------------------------------------------- Primary / Replica


def test_primary_strategy_always_picks_primary():
    s = Primary()
    assert {s.pick(shard(R1, R2), NONE) for _ in range(10)} == {P}


def test_replica_round_robin_is_exactly_even():
    s = Replica()
    sh = shard(R1, R2)
    counts = Counter(s.pick(sh, NONE) for _ in range(1000))
    assert counts == {R1: 500, R2: 500}


def test_replica_round_robin_alternates():
    s = Replica()
    sh = shard(R1, R2)
    picks = [s.pick(sh, NONE) for _ in range(4)]
    assert picks[0] != picks[1] and picks[0] == picks[2] and picks[1] == picks[3]


def test_replica_round_robin_even_across_threads():
    s = Replica()
    sh = shard(R1, R2)
    n_threads, per_thread = 8, 1000
    counts: list[Counter] = [Counter() for _ in range(n_threads)]
    start = threading.Barrier(n_threads)

    def work(i):
        start.wait()
        c = counts[i]
        for _ in range(per_thread):
            c[s.pick(sh, NONE)] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(counts, Counter())
    assert sum(total.values()) == n_threads * per_thread
    for r in (R1, R2):
        assert 0.45 * n_threads * per_thread <= total[r] <= 0.55 * n_threads * per_thread
    # itertools.count hands out every index exactly once: the split is exact
    assert total[R1] == total[R2]


def test_replica_skips_down_replica():
    s = Replica()
    states = NodeStates(down=frozenset({R1.name}))
    assert {s.pick(shard(R1, R2), states) for _ in range(10)} == {R2}


def test_replica_falls_back_to_primary_when_all_replicas_down():
    s = Replica()
    states = NodeStates(down=frozenset({R1.name, R2.name}))
    assert s.pick(shard(R1, R2), states) is P


def test_replica_falls_back_to_primary_without_replicas():
    assert Replica().pick(shard(), NONE) is P


def test_replica_without_fallback_returns_none():
    s = Replica(fallback_to_primary=False)
    assert s.pick(shard(), NONE) is None
    assert s.pick(shard(R1), NodeStates(down=frozenset({R1.name}))) is None


def test_replica_skips_failed_replica_not_in_readable():
    failed = Node("h", 9, REPLICA, "f", health="failed")
    s = Replica()
    assert {s.pick(shard(failed, R1), NONE) for _ in range(6)} == {R1}


def test_replica_rotation_is_per_shard():
    s = Replica()
    a, b = shard(R1, R2, sid="a"), shard(R1, R2, sid="b")
    first_a = s.pick(a, NONE)
    assert s.pick(b, NONE) == first_a


def test_replica_preferred_falls_back_to_primary():
    s = ReplicaPreferred()
    assert s.pick(shard(), NONE) is P
    assert s.pick(shard(R1), NONE) is R1


# ---------------------------------------------------------------- Any


def test_any_rotates_over_primary_and_replicas():
    s = Any_()
    sh = shard(R1, R2)
    counts = Counter(s.pick(sh, NONE) for _ in range(300))
    assert counts == {P: 100, R1: 100, R2: 100}


def test_any_skips_down_nodes():
    s = Any_()
    states = NodeStates(down=frozenset({P.name, R2.name}))
    assert {s.pick(shard(R1, R2), states) for _ in range(9)} == {R1}


def test_any_without_primary_uses_replicas():
    s = Any_()
    assert {s.pick(shard(R1, primary=None), NONE) for _ in range(3)} == {R1}


# ---------------------------------------------------------------- Nearest


def test_nearest_picks_lowest_latency():
    s = Nearest()
    states = NodeStates(latency={P.name: 0.010, R1.name: 0.002, R2.name: 0.005})
    assert {s.pick(shard(R1, R2), states) for _ in range(10)} == {R1}


def test_nearest_rotates_within_tolerance():
    s = Nearest(tolerance=0.10)
    states = NodeStates(latency={P.name: 0.010, R1.name: 0.00100, R2.name: 0.00105})
    counts = Counter(s.pick(shard(R1, R2), states) for _ in range(100))
    assert counts == {R1: 50, R2: 50}


def test_nearest_excludes_nodes_outside_tolerance():
    s = Nearest(tolerance=0.10)
    states = NodeStates(latency={P.name: 0.0012, R1.name: 0.0010, R2.name: 0.0010})
    assert P not in {s.pick(shard(R1, R2), states) for _ in range(20)}


def test_nearest_tries_unmeasured_nodes_first():
    s = Nearest()
    states = NodeStates(latency={P.name: 0.001, R1.name: 0.001})
    assert {s.pick(shard(R1, R2), states) for _ in range(5)} == {R2}


def test_nearest_skips_down_nodes():
    s = Nearest()
    states = NodeStates(down=frozenset({R1.name}), latency={P.name: 0.01, R1.name: 0.001, R2.name: 0.005})
    assert s.pick(shard(R1, R2), states) is R2


def test_nearest_without_primary_option_uses_only_replicas():
    s = Nearest(include_primary=False)
    states = NodeStates(latency={P.name: 0.0001, R1.name: 0.01})
    assert s.pick(shard(R1), states) is R1


def test_nearest_falls_back_to_primary_when_all_down():
    s = Nearest()
    states = NodeStates(down=frozenset({P.name, R1.name}))
    assert s.pick(shard(R1), states) is P


# ---------------------------------------------------------------- choose (both clients route reads through it)

_SHARD = Shard(((0, 16383),), P, (R1,), "p")
PRIMARY_READS = make_strategy("primary")


def test_primary_reads_stay_on_a_healthy_primary():
    assert choose(_SHARD, NodeStates(), PRIMARY_READS, True, True) is P


def test_primary_reads_fall_back_to_a_replica_while_the_primary_is_down():
    assert choose(_SHARD, NodeStates(frozenset({"h:1"})), PRIMARY_READS, True, True) is R1


def test_no_fallback_when_the_user_forbids_it():
    assert choose(_SHARD, NodeStates(frozenset({"h:1"})), PRIMARY_READS, True, False) is P


def test_no_fallback_to_a_replica_that_is_down_too():
    assert choose(_SHARD, NodeStates(frozenset({"h:1", "h:2"})), PRIMARY_READS, True, True) is P


def test_a_strategy_that_finds_no_replica_falls_back_to_the_primary():
    assert choose(_SHARD, NodeStates(frozenset({"h:2"})), make_strategy("replica"), False, True) is P
    assert choose(_SHARD, NodeStates(), make_strategy("replica"), False, True) is R1
