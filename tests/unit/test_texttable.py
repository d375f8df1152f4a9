"""Readable summaries: `print(client.topology())` / `print(client.stats())` and the CLI's plain tables."""

from __future__ import annotations

from clusterpool.snapshots import EMPTY_VIEW, NodeView, ShardView, TopologyView, client_stats
from clusterpool.snapshots import PoolStats
from clusterpool.texttable import plain, slot_ranges, table


def node(port, role):
    return NodeView(f"127.0.0.1:{port}", "x" * 40, "127.0.0.1", port, role, "online", "healthy", 0.25, None)


VIEW = TopologyView(3, "127.0.0.1:7000", 16384, (
    ShardView(((0, 8191),), node(7000, "primary"), (node(7002, "replica"),)),
    ShardView(((8192, 16383),), node(7001, "primary"), (node(7003, "replica"),)),
))


def test_a_topology_prints_a_title_and_one_line_per_node():
    lines = str(VIEW).splitlines()
    assert lines[0] == "cluster via 127.0.0.1:7000: 2 shards, 4 nodes, 16384/16384 slots covered (ok), map v3"
    rows = [line for line in lines if "127.0.0.1:70" in line and not line.startswith("cluster")]
    assert len(rows) == 4
    assert rows[0].split()[:4] == ["0", "0-8191", "127.0.0.1:7000", "primary"]
    assert rows[1].split()[:2] == ["127.0.0.1:7002", "replica"]  # shard and slots only on its first line
    assert max(len(line) for line in lines) < 140  # a summary, not the 2,000-character repr
    assert "x" * 40 not in str(VIEW)  # node ids stay in as_dict()


def test_an_uncovered_map_says_so():
    view = TopologyView(1, "a:1", 100, VIEW.shards[:1])
    assert "100/16384 slots covered (NOT FULLY COVERED)" in str(view)


def test_an_empty_view_still_prints():
    assert str(EMPTY_VIEW).startswith("cluster via -: 0 shards, 0 nodes")


def test_stats_print_one_line_per_pool():
    stats = client_stats([PoolStats("127.0.0.1:7000", 50, 2, 1, 1, 0, 2, 0, 0, 0, 10, 0.001)], 4, 5, 3)
    text = str(stats)
    assert text.splitlines()[0].startswith("pools: 2 connections (1 in use, 1 idle, 0 waiting), 4 refreshes")
    assert "127.0.0.1:7000" in text.splitlines()[3]


def test_plain_aligns_columns_and_rules_between_sections():
    t = table("title", ("a", "bb"), [[("1", "long value")], [("22", "x")]])
    assert plain(t).splitlines() == ["title", "a   bb", "--  ----------", "1   long value", "--  ----------", "22  x"]


def test_slot_ranges_text():
    assert slot_ranges(((0, 5460), (7000, 7000))) == "0-5460, 7000"
    assert slot_ranges(()) == "-"
