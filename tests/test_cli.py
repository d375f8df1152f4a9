"""The `clusterpool` command line (argparse, in-process via cli.run) against the session cluster,
and the installed console script with only the core dependencies importable."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from clusterpool.cli import run as cli_run
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


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def invoke(capsys):
    """Run the command line in this process: its exit status and what it printed."""

    def call(argv):
        capsys.readouterr()
        code = cli_run(argv)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return call


@pytest.fixture
def run(cluster, invoke):
    url = f"redis://{cluster.host}:{cluster.primaries()[0]}"
    return lambda *args: invoke(["--url", url, *args])


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


def test_size_littles_law(invoke):
    r = invoke(["size", "--rate", "10000", "--latency-ms", "2"])
    assert r.exit_code == 0, r.output
    assert "total max_connections: 24" in r.output
    assert "max_connections=8" in r.output  # 24 over the default 3 nodes

    r = invoke(["--json", "size", "--rate", "10000", "--latency-ms", "2", "--headroom", "1.5", "--nodes", "4"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["total"] == 30 and data["per_node"] == 8 and data["concurrency"] == 20


def test_size_does_not_need_a_cluster(invoke):
    r = invoke(["--url", f"redis://127.0.0.1:{_free_port()}", "size", "--rate", "500", "--latency-ms", "1"])
    assert r.exit_code == 0, r.output
    assert "total max_connections: 1" in r.output


def test_size_rejects_bad_input(invoke):
    r = invoke(["size", "--rate", "0", "--latency-ms", "2"])
    assert r.exit_code == 2 and "--rate" in r.stderr
    r = invoke(["size", "--rate", "10", "--latency-ms", "2", "--headroom", "0.5"])
    assert r.exit_code == 2 and "--headroom" in r.stderr
    r = invoke(["size", "--rate", "ten", "--latency-ms", "2"])
    assert r.exit_code == 2 and "'ten' is not a number" in r.stderr


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


def test_unreachable_cluster_exits_1_with_one_line(invoke):
    url = f"redis://127.0.0.1:{_free_port()}"
    for args in (["topology"], ["--json", "topology"], ["route", "foo"], ["stats"],
                 ["watch", "--seconds", "1"]):
        r = invoke(["--url", url, *args])
        assert r.exit_code == 1, (args, r.output)
        assert r.stdout == ""
        err = r.stderr.strip()
        assert "\n" not in err
        assert "Traceback" not in err
        assert "no startup node could be reached" in err and url in err


def test_bad_url_exits_1(invoke):
    r = invoke(["--url", "http://nope", "topology"])
    assert r.exit_code == 1
    assert "bad cluster URL" in r.stderr


def test_url_from_environment(cluster, invoke, monkeypatch):
    monkeypatch.setenv("CLUSTERPOOL_URL", f"redis://{cluster.host}:{cluster.primaries()[0]}")
    r = invoke(["--json", "route", "foo"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["slot"] == 12182


def test_json_and_url_are_accepted_after_the_subcommand(cluster, invoke):
    url = f"redis://{cluster.host}:{cluster.primaries()[0]}"
    r = invoke(["topology", "--json", "--url", url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["covered_slots"] == SLOT_COUNT
    r = invoke(["route", "foo", "--json", "--url", url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["slot"] == 12182


def test_an_unknown_subcommand_is_a_usage_error(invoke):
    r = invoke(["topolgy"])
    assert r.exit_code == 2 and "invalid choice" in r.stderr


# The console script as a plain `pip install redis-clusterpool` leaves it: an import blocker lets
# only the standard library, clusterpool and its core dependencies (from the installed metadata,
# without extras; their own requirements too) load, so click, rich or anything from the dev extra
# in this venv fails to import exactly as in a venv without extras.
_CORE_ONLY = r"""
import importlib.metadata as md, re, sys

def requirements(dist, seen):
    for req in md.requires(dist) or ():
        if "extra ==" in req:
            continue
        name = re.match(r"[A-Za-z0-9._-]+", req).group(0).lower().replace("_", "-")
        if name not in seen:
            seen.add(name)
            try:
                requirements(name, seen)
            except md.PackageNotFoundError:
                pass  # a marker excludes it here (python_version ...)
    return seen

dists = requirements("redis-clusterpool", {"redis-clusterpool"})
allowed = {top for top, owners in md.packages_distributions().items()
           if any(o.lower().replace("_", "-") in dists for o in owners)}
allowed |= set(sys.stdlib_module_names) | {"clusterpool"}

class CoreOnly:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in allowed and not top.startswith("_"):
            raise ImportError(f"{top} is not a core dependency", name=top)
        return None

sys.meta_path.insert(0, CoreOnly())
(script,) = md.distribution("redis-clusterpool").entry_points.select(group="console_scripts", name="clusterpool")
sys.argv = ["clusterpool", *sys.argv[1:]]
script.load()()
"""


def _core_only(*argv):
    return subprocess.run([sys.executable, "-c", _CORE_ONLY, *argv], capture_output=True, text=True, timeout=120)


def test_the_core_dependencies_do_not_include_click_or_rich():
    import importlib.metadata as md

    core = [q for q in md.requires("redis-clusterpool") or () if "extra ==" not in q]
    assert not [q for q in core if q.lower().startswith(("click", "rich"))]


def test_the_blocker_really_stops_extras():
    code = _CORE_ONLY.replace('script.load()()', 'import rich')
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "rich is not a core dependency" in r.stderr


def test_help_works_with_only_the_core_dependencies():
    r = _core_only("--help")
    assert r.returncode == 0, r.stderr
    for command in ("topology", "route", "stats", "size", "watch"):
        assert command in r.stdout


@pytest.mark.parametrize(
    "args,expect",
    [
        (["topology"], "slots covered"),
        (["topology", "--json"], '"covered_slots": 16384'),
        (["route", "foo"], "12182"),
        (["stats"], "pools:"),
        (["size", "--rate", "10000", "--latency-ms", "2"], "total max_connections: 24"),
        (["watch", "--seconds", "1", "--json"], ""),
    ],
    ids=["topology", "topology-json", "route", "stats", "size", "watch"],
)
def test_every_command_works_with_only_the_core_dependencies(cluster, args, expect):
    r = _core_only("--url", f"redis://{cluster.host}:{cluster.primaries()[0]}", *args)
    assert r.returncode == 0, r.stderr
    assert expect in r.stdout
    assert "Traceback" not in r.stderr


def test_plain_tables_without_rich_list_every_node(cluster):
    r = _core_only("--url", f"redis://{cluster.host}:{cluster.primaries()[0]}", "topology")
    assert r.returncode == 0, r.stderr
    for port in cluster.ports:
        assert f"{cluster.host}:{port}" in r.stdout
    assert "─" not in r.stdout  # rich's box drawing: rich was not used
