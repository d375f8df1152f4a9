"""The `clusterpool` command line (click's CliRunner) against the session cluster."""

from __future__ import annotations

import json
import socket
import time

import pytest
from click.testing import CliRunner

from clusterpool.cli import main
from clusterpool.sizing import recommend_pool_size
from clusterpool.slots import SLOT_COUNT


def _ranges(cluster, port):
    """The slot ranges `port` owns, formatted the way the CLI prints them."""
    slots = sorted(cluster.slots_of(port))
    out = []
    for s in slots:
        if out and out[-1][1] == s - 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return [f"{a}-{b}" if a != b else str(a) for a, b in out]


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def run(cluster):
    url = f"redis://{cluster.host}:{cluster.primaries()[0]}"

    def invoke(*args, url=url, env=None):
        result = CliRunner().invoke(main, ["--url", url, *args], env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


def test_topology_table_lists_every_node_and_range(run, cluster):
    r = run("topology")
    assert r.exit_code == 0, r.output
    for port in cluster.ports:
        assert f"{cluster.host}:{port}" in r.output
    for port in cluster.primaries():
        for rng in _ranges(cluster, port):
            assert rng in r.output
    assert f"{SLOT_COUNT}/{SLOT_COUNT} slots covered" in r.output
    assert "primary" in r.output and "replica" in r.output


def test_topology_json_covers_all_slots(run, cluster):
    r = run("--json", "topology")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert len(data["shards"]) == 3
    assert data["covered_slots"] == SLOT_COUNT
    assert sum(b - a + 1 for s in data["shards"] for a, b in s["slots"]) == SLOT_COUNT
    names = {s["primary"]["name"] for s in data["shards"]} | {
        r["name"] for s in data["shards"] for r in s["replicas"]
    }
    assert names == {f"{cluster.host}:{p}" for p in cluster.ports}
    for s in data["shards"]:
        assert s["primary"]["role"] == "primary"
        assert s["primary"]["latency_ms"] is not None  # the CLI pings every node once
        assert all(r["role"] == "replica" for r in s["replicas"])


def test_route_shows_slot_primary_and_replica(run, cluster):
    owner = cluster.slot_owner(12182)
    replicas = {f"{cluster.host}:{p}" for p in cluster.replicas_of(owner)}
    r = run("route", "foo")
    assert r.exit_code == 0, r.output
    assert "12182" in r.output
    assert f"{cluster.host}:{owner}" in r.output

    r = run("--json", "route", "foo", "{foo}bar", "x")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [row["key"] for row in rows] == ["foo", "{foo}bar", "x"]
    assert rows[0]["slot"] == rows[1]["slot"] == 12182
    assert rows[0]["primary"] == f"{cluster.host}:{owner}"
    assert rows[0]["read"] in replicas and rows[0]["read_role"] == "replica"
    assert rows[2]["slot"] == cluster.key_slot("x")
    assert rows[2]["primary"] == f"{cluster.host}:{cluster.slot_owner(rows[2]['slot'])}"


def test_route_needs_a_key(run):
    r = run("route")
    assert r.exit_code == 2


def test_stats_table_and_json(run, cluster):
    r = run("stats")
    assert r.exit_code == 0, r.output
    for port in cluster.ports:
        assert f"{cluster.host}:{port}" in r.output

    r = run("--json", "stats")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert {n["node"] for n in data["nodes"]} == {f"{cluster.host}:{p}" for p in cluster.ports}
    assert data["total_connections"] >= len(cluster.ports)
    assert data["topology_version"] >= 1


def test_size_littles_law():
    r = CliRunner().invoke(main, ["size", "--rate", "10000", "--latency-ms", "2"])
    assert r.exit_code == 0, r.output
    assert "total max_connections: 24" in r.output
    assert "max_connections=8" in r.output  # 24 over the default 3 nodes

    r = CliRunner().invoke(main, ["--json", "size", "--rate", "10000", "--latency-ms", "2",
                                  "--headroom", "1.5", "--nodes", "4"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["total"] == 30 and data["per_node"] == 8 and data["concurrency"] == 20


def test_size_does_not_need_a_cluster():
    r = CliRunner().invoke(main, ["--url", f"redis://127.0.0.1:{_free_port()}", "size",
                                  "--rate", "500", "--latency-ms", "1"])
    assert r.exit_code == 0, r.output
    assert "total max_connections: 1" in r.output


def test_size_rejects_bad_input():
    r = CliRunner().invoke(main, ["size", "--rate", "0", "--latency-ms", "2"])
    assert r.exit_code == 2
    r = CliRunner().invoke(main, ["size", "--rate", "10", "--latency-ms", "2", "--headroom", "0.5"])
    assert r.exit_code == 2


def test_sizing_function_rounds_up_without_float_noise():
    assert recommend_pool_size(10000, 2).total == 24
    assert recommend_pool_size(1000, 300, 1.1, 1).total == 330  # 330.00000000000006 in floats
    assert recommend_pool_size(1000, 300, 1.1, 1).per_node == 330
    assert recommend_pool_size(1, 0.001).total == 1
    with pytest.raises(ValueError):
        recommend_pool_size(-1, 2)


def test_watch_for_seconds_exits_zero(run):
    start = time.monotonic()
    r = run("watch", "--seconds", "2")
    took = time.monotonic() - start
    assert r.exit_code == 0, r.output
    assert took >= 1.5  # it watched for the time asked, then exited by itself
    assert "watching" in r.stderr


def test_watch_json_lines_parse(run):
    r = run("--json", "watch", "--seconds", "1.5")
    assert r.exit_code == 0, r.output
    for line in r.stdout.splitlines():
        d = json.loads(line)
        assert "event" in d and "time" in d


def test_unreachable_cluster_exits_1_with_one_line(cluster):
    url = f"redis://127.0.0.1:{_free_port()}"
    for args in (["topology"], ["--json", "topology"], ["route", "foo"], ["stats"],
                 ["watch", "--seconds", "1"]):
        r = CliRunner().invoke(main, ["--url", url, *args])
        assert r.exit_code == 1, (args, r.output)
        assert r.stdout == ""
        err = r.stderr.strip()
        assert "\n" not in err
        assert "Traceback" not in err
        assert "no startup node could be reached" in err and url in err


def test_bad_url_exits_1():
    r = CliRunner().invoke(main, ["--url", "http://nope", "topology"])
    assert r.exit_code == 1
    assert "bad cluster URL" in r.stderr


def test_url_from_environment(cluster):
    url = f"redis://{cluster.host}:{cluster.primaries()[0]}"
    r = CliRunner().invoke(main, ["--json", "route", "foo"], env={"CLUSTERPOOL_URL": url})
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["slot"] == 12182


def _console_script(*argv, hide=()):
    """Run the `clusterpool` console script's entry in a fresh interpreter, with `hide` made unimportable."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        f"for name in {list(hide)!r}: sys.modules[name] = None\n"
        f"sys.argv = ['clusterpool', *{list(argv)!r}]\n"
        "from clusterpool.entry import main\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_console_script_without_click_says_how_to_install_it():
    r = _console_script("--help", hide=["click"])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "clusterpool: the command line needs click, which is not installed: pip install 'redis-clusterpool[cli]'"
    ]


def test_console_script_without_rich_says_how_to_install_it():
    r = _console_script("--help", hide=["rich"])
    assert r.returncode == 2
    assert "needs rich" in r.stderr and "Traceback" not in r.stderr


def test_console_script_help_with_the_cli_extra_installed():
    r = _console_script("--help")
    assert r.returncode == 0, r.stderr
    assert "topology" in r.stdout
