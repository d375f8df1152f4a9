"""clusterpool.refresh.choose: which CLUSTER SHARDS answer to adopt."""

from __future__ import annotations


from clusterpool.refresh import choose
from clusterpool.topology import PRIMARY, Node, Shard, Topology


def topo(*ranges_by_port, source=""):
    """A topology with one primary per (port, ranges) pair; uncovered slots where none."""
    return Topology(
        tuple(Shard(tuple(rs), Node("h", port, PRIMARY, str(port)), (), str(port)) for port, rs in ranges_by_port),
        source,
    )


FULL = topo((1, [(0, 8191)]), (2, [(8192, 16383)]))
FULL_MOVED = topo((1, [(0, 8000)]), (2, [(8001, 16383)]))
PARTIAL = topo((1, [(0, 8191)]))


def test_no_answers_keeps_current():
    assert choose(FULL, []) is None


def test_first_map_is_adopted_whatever_its_coverage():
    assert choose(None, [PARTIAL]) is PARTIAL


def test_adopts_better_map():
    assert choose(PARTIAL, [FULL]) is FULL


def test_adopts_equally_covering_map():
    assert choose(FULL, [FULL_MOVED]) is FULL_MOVED


def test_adopts_best_of_several_answers():
    assert choose(PARTIAL, [PARTIAL, FULL]) is FULL


def test_keeps_current_when_single_answer_covers_fewer_slots():
    assert choose(FULL, [PARTIAL]) is None


def test_keeps_current_when_two_worse_answers_disagree():
    other = topo((2, [(8192, 16383)]))
    assert choose(FULL, [PARTIAL, other]) is None


def test_adopts_worse_map_confirmed_by_two_equal_answers():
    a = topo((1, [(0, 8191)]))
    b = topo((1, [(0, 8191)]))
    assert a is not b
    assert choose(FULL, [a, b]) is a


def test_confirmation_ignores_version():
    a = topo((1, [(0, 8191)])).with_version(3)
    b = topo((1, [(0, 8191)])).with_version(4)
    assert choose(FULL, [a, b]) is a


def test_adopts_worse_map_confirmed_by_two_different_nodes():
    a = topo((1, [(0, 8191)]), source="h:1")
    b = topo((1, [(0, 8191)]), source="h:3")
    assert choose(FULL, [a, b]) is a
