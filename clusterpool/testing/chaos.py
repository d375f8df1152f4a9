#!/usr/bin/env python3
"""Chaos scenarios: faults injected into a fresh local cluster while the consistency checker runs.

Importable as ``clusterpool.testing.chaos`` and runnable::

    python -m clusterpool.testing.chaos                      # every scenario, one fresh 3x1 cluster each
    python -m clusterpool.testing.chaos --quick              # shorter load, fewer slots / kills
    python -m clusterpool.testing.chaos --scenario kill9     # one scenario (repeatable option)
    python -m clusterpool.testing.chaos --repeat 100         # 100 manual failovers on one client: thread/fd growth

Each scenario starts a LocalCluster (clusterpool.testing.cluster, loopback, no
persistence, node timeout 2 s), connects a ClusterClient with
``retry_unknown_outcome=False`` and ``socket_timeout=1`` (defaults otherwise),
runs the checker (clusterpool.testing.consistency) in the background, injects the
fault, waits until the cluster is healthy again, keeps the load on for a few
more seconds, reads every counter once more (``Checker.verify``), closes the
client and stops the cluster. One line per scenario:

    ops, errors surfaced by type, lost writes, unacknowledged INCRs applied,
    reads that went backwards, recovery (time from the fault until the client
    served normally again: the end of the last operation that raised or took
    longer than 250 ms), max latency, thread/fd counts before the client and
    after its close.

Everything is bounded: each wait has a timeout, the checker has a time cap,
the clusters are stopped in ``finally`` (and by the harness's atexit hook and
PR_SET_PDEATHSIG if this process dies).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from clusterpool import ClusterClient, key_slot
from clusterpool.resp import as_map, text

from .cluster import LocalCluster
from .consistency import Checker, Report

CHECKER_CAP = 300.0  # seconds: the checker stops by itself even if a scenario hangs


def thread_count() -> int:
    return len(threading.enumerate())


def fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - not Linux
        return -1


@dataclass
class Result:
    name: str
    report: Report
    t_fault: float = 0.0  # monotonic time the fault was injected
    t_healed: float = 0.0  # monotonic time the cluster was healthy again (harness view)
    t_promoted: float = 0.0  # monotonic time the promoted replica first showed as primary in CLUSTER SHARDS
    fault_seconds: float = 0.0
    threads_before: int = 0
    threads_after: int = 0
    fds_before: int = 0
    fds_after: int = 0
    notes: list[str] = field(default_factory=list)
    checker: Checker | None = None
    marks: dict[str, float] = field(default_factory=dict)  # figures a scenario reports (promoted, killed)
    breaker_opened: list[str] = field(default_factory=list)  # nodes whose breaker the client opened

    @property
    def recovery(self) -> float:
        return self.report.recovery or 0.0

    @property
    def promotion(self) -> float:
        """Seconds from the fault until the promoted replica showed as primary (0: no promotion)."""
        return self.t_promoted - self.t_fault if self.t_promoted else 0.0

    @property
    def lag(self) -> float:
        """How long after the promotion the client recovered (recovery - promotion)."""
        return self.recovery - self.promotion

    def line(self) -> str:
        r = self.report
        errs = ",".join(f"{k}={v}" for k, v in sorted(r.errors.items())) or "0"
        out = (
            f"{self.name:<14} ops={r.ops} errors={errs} lost={r.lost_writes} "
            f"unacked={r.unacked} unacked_applied={r.unacked_applied} backwards={r.backwards_reads} "
            f"recovery={self.recovery:.2f}s max_latency={r.max_latency * 1000:.0f}ms "
            f"fault={self.fault_seconds:.1f}s threads={self.threads_before}->{self.threads_after} "
            f"fds={self.fds_before}->{self.fds_after}"
        )
        if self.t_promoted:
            out += f" promoted=+{self.promotion:.2f}s lag={self.lag:+.2f}s"
        if self.notes:
            out += " | " + "; ".join(self.notes)
        return out


# ---------------------------------------------------------------- helpers


def key_slots(checker: Checker) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for k in checker.keys:
        out.setdefault(key_slot(k.encode()), []).append(k)
    return out


def loaded_slots(cluster: LocalCluster, checker: Checker, port: int, n: int) -> list[int]:
    """Up to `n` slots of `port` that hold checker keys (so the move is under load)."""
    mine = set(cluster.slots_of(port))
    return sorted(s for s in key_slots(checker) if s in mine)[:n]


def wait_synced(cluster: LocalCluster, timeout: float = 30.0) -> float:
    """Wait until every running replica's link to its primary is up and its initial sync done.

    Right after start a replica has no data: redis 7 syncs diskless after
    `repl-diskless-sync-delay` (5 s). A primary killed before that takes every
    write with it when its empty replica is promoted (the server's doing, not the
    client's), so scenarios wait for this first. Returns the seconds waited.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        pending = []
        for p in cluster.replicas():
            try:
                with cluster.client(p) as r:
                    info = r.info("replication")
            except Exception as e:  # noqa: BLE001
                pending.append(f"{p}: {e}")
                continue
            if info.get("master_link_status") != "up" or int(info.get("master_sync_in_progress", 0)):
                pending.append(f"{p}: link {info.get('master_link_status')}")
        if not pending:
            return time.monotonic() - t0
        if time.monotonic() >= deadline:
            raise TimeoutError(f"replicas not in sync after {timeout}s: {pending}")
        time.sleep(0.1)


def client_kill_all(cluster: LocalCluster) -> int:
    killed = 0
    for p in cluster.ports:
        if cluster.is_running(p) and not cluster.is_paused(p):
            killed += int(cluster._cmd(p, "CLIENT", "KILL", "TYPE", "normal"))
    return killed


class PromotionWatch:
    """Polls a replica's CLUSTER SHARDS every few ms and records the moment it first lists itself
    as a primary: the earliest a client could learn of the promotion."""

    def __init__(self, cluster: LocalCluster, port: int, marks: dict[str, float], every: float = 0.005):
        self.node_id = cluster.node_id(port)
        self.marks = marks
        self.every = every
        self._client = redis.Redis(cluster.host, port, socket_timeout=0.2, socket_connect_timeout=0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-promotion-watch", daemon=True)

    def _promoted(self) -> bool:
        for shard in self._client.execute_command("CLUSTER", "SHARDS"):
            sh = as_map(shard)
            for node in sh["nodes"]:
                nd = as_map(node)
                if text(nd["id"]) == self.node_id:
                    return text(nd["role"]) == "master" and bool(sh["slots"])
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if self._promoted():
                    self.marks.setdefault("promoted", time.monotonic())
                    return
            except (redis.RedisError, OSError):
                continue

    def __enter__(self) -> PromotionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(Exception):
            self._client.close()


# ---------------------------------------------------------------- scenarios
# Each injects its fault, waits until the cluster is healthy, and returns notes; scenarios with a
# promotion put its moment in `marks["promoted"]`.


def sc_failover(c: LocalCluster, checker: Checker, quick: bool, marks: dict[str, float]) -> list[str]:
    primary = c.primaries()[0]
    replica = c.replicas_of(primary)[0]
    with PromotionWatch(c, replica, marks):
        c.failover(replica)
    return [f"CLUSTER FAILOVER {replica} (was replica of {primary})"]


def sc_kill9(c: LocalCluster, checker: Checker, quick: bool, marks: dict[str, float]) -> list[str]:
    victim = c.primaries()[0]
    with PromotionWatch(c, c.replicas_of(victim)[0], marks):
        c.kill(victim)
        t = time.monotonic()
        new = c.wait_promoted(victim, timeout=30)
    promoted = time.monotonic() - t
    c.restart(victim, timeout=30)
    c.wait_ok(30)
    return [f"killed {victim}, {new} promoted after {promoted:.1f}s, {victim} back as {c.role(victim)}"]


def sc_pause(c: LocalCluster, checker: Checker, quick: bool, marks: dict[str, float]) -> list[str]:
    victim = c.primaries()[0]
    t = time.monotonic()
    try:
        with PromotionWatch(c, c.replicas_of(victim)[0], marks):
            c.pause(victim)
            t = time.monotonic()
            new = c.wait_promoted(victim, timeout=30)
        promoted = time.monotonic() - t
        time.sleep(0.5)
    finally:
        c.resume(victim)
    paused = time.monotonic() - t
    c.wait_ok(30)
    return [f"SIGSTOP {victim} for {paused:.1f}s, {new} promoted after {promoted:.1f}s, "
            f"{victim} back as {c.role(victim)}"]


def sc_migrate(c: LocalCluster, checker: Checker, quick: bool, marks: dict[str, float]) -> list[str]:
    src, dst = c.primaries()[:2]
    slots = loaded_slots(c, checker, src, 50 if quick else 200)
    c.move_slots(slots, dst, timeout=60)
    return [f"moved {len(slots)} loaded slots {src}->{dst}"]


def sc_add_remove(c: LocalCluster, checker: Checker, quick: bool, marks: dict[str, float]) -> list[str]:
    src = c.primaries()[0]
    new = c.add_node()
    slots = loaded_slots(c, checker, src, 30 if quick else 100)
    c.move_slots(slots, new, timeout=60)
    time.sleep(0.5 if quick else 1.0)
    c.move_slots(slots, src, timeout=60)
    c.remove_node(new)
    return [f"added {new}, moved {len(slots)} slots {src}->{new}->{src}, removed {new}"]


def sc_client_kill(c: LocalCluster, checker: Checker, quick: bool, marks: dict[str, float]) -> list[str]:
    rounds = 3 if quick else 10
    killed = 0
    for _ in range(rounds):
        killed += client_kill_all(c)
        time.sleep(0.3)
    marks["killed"] = killed
    return [f"CLIENT KILL TYPE normal on all nodes x{rounds}: {killed} connections killed"]


def sc_restart(c: LocalCluster, checker: Checker, quick: bool, marks: dict[str, float]) -> list[str]:
    # No persistence in the harness: a primary restarted before a failover comes back
    # empty (server-side data loss, not a client matter). Restart a replica instead;
    # a killed-and-restarted primary is covered by kill9.
    replica = c.replicas()[0]
    c.kill(replica)
    c.restart(replica, timeout=30)
    c.wait_ok(30)
    return [f"kill -9 + restart of replica {replica}"]


SCENARIOS: dict[str, Callable[[LocalCluster, Checker, bool, dict[str, float]], list[str]]] = {
    "failover": sc_failover,
    "kill9": sc_kill9,
    "pause": sc_pause,
    "migrate": sc_migrate,
    "add_remove": sc_add_remove,
    "client_kill": sc_client_kill,
    "restart": sc_restart,
}


def make_client(cluster: LocalCluster, **kw: Any) -> ClusterClient:
    opts: dict[str, Any] = {"retry_unknown_outcome": False, "socket_timeout": 1.0}
    opts.update(kw)
    return ClusterClient(startup_nodes=cluster.startup_nodes, **opts)


def run_scenario(
    name: str,
    cluster: LocalCluster,
    quick: bool = False,
    threads: int = 4,
    verbose: bool = False,
    warm: float | None = None,
    after: float | None = None,
    seed: int = 1,
    client_kw: dict[str, Any] | None = None,
) -> Result:
    """Run scenario `name` against `cluster` (healthy, 3 primaries x 1 replica)."""
    fn = SCENARIOS[name]
    wait_synced(cluster)
    warm = (0.5 if quick else 2.0) if warm is None else warm
    after = (1.5 if quick else 3.0) if after is None else after
    threads_before, fds_before = thread_count(), fd_count()
    client = make_client(cluster, **(client_kw or {}))
    checker = Checker(client, keys=1000, seed=seed, report_every=1.0 if verbose else None, label=name)
    stop = threading.Event()
    box: dict[str, Any] = {}

    def load() -> None:
        try:
            box["report"] = checker.run(seconds=CHECKER_CAP, threads=threads, stop_event=stop)
        except BaseException as e:  # noqa: BLE001 - reported below
            box["error"] = e

    result = Result(name, Report(), threads_before=threads_before, fds_before=fds_before, checker=checker)

    def on_health(e: Any) -> None:
        if e.new == "unhealthy":
            result.breaker_opened.append(e.node)

    client.on("node_health_changed", on_health)
    try:
        client.connect()
        t = threading.Thread(target=load, name=f"chaos-{name}", daemon=True)
        t.start()
        time.sleep(warm)
        result.t_fault = time.monotonic()
        marks = result.marks
        try:
            result.notes = fn(cluster, checker, quick, marks)
        finally:
            result.t_promoted = marks.get("promoted", 0.0)
            result.t_healed = time.monotonic()
            result.fault_seconds = result.t_healed - result.t_fault
            time.sleep(after)
            stop.set()
            t.join(60)
            if t.is_alive():
                result.notes.append("CHECKER DID NOT STOP (hang)")
        if "error" in box:
            raise box["error"]
        report = checker.verify()
        report.recovery = checker.recovery_after(result.t_fault)
        result.report = report
    finally:
        client.close()
    time.sleep(0.1)
    result.threads_after, result.fds_after = thread_count(), fd_count()
    return result


def run_fresh(name: str, quick: bool, threads: int, verbose: bool) -> Result:
    with LocalCluster(primaries=3, replicas=1) as cluster:
        return run_scenario(name, cluster, quick=quick, threads=threads, verbose=verbose)


def repeat_failovers(n: int, threads: int = 4, verbose: bool = False) -> str:
    """`n` manual failovers (round-robin over the shards) under load on one client."""
    with LocalCluster(primaries=3, replicas=1) as cluster:
        wait_synced(cluster)
        threads0, fds0 = thread_count(), fd_count()
        client = make_client(cluster)
        checker = Checker(client, keys=1000, seed=7, report_every=None)
        stop = threading.Event()
        box: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: box.update(r=checker.run(seconds=CHECKER_CAP * 4, threads=threads, stop_event=stop)),
            daemon=True,
        )
        times: list[float] = []
        try:
            client.connect()
            t.start()
            time.sleep(1.0)
            threads1, fds1 = thread_count(), fd_count()
            for i in range(n):
                primary = cluster.primaries()[i % 3]
                replica = cluster.replicas_of(primary)[0]
                t0 = time.monotonic()
                cluster.failover(replica)
                times.append(time.monotonic() - t0)
                if verbose:
                    print(f"  failover {i + 1}/{n}: {replica} took over from {primary} in {times[-1]:.2f}s "
                          f"| {checker.snapshot().line()} threads={thread_count()} fds={fd_count()}", flush=True)
            time.sleep(1.0)
            threads2, fds2 = thread_count(), fd_count()
        finally:
            stop.set()
            t.join(60)
        report = checker.verify()
        client.close()
        time.sleep(0.1)
        threads3, fds3 = thread_count(), fd_count()
    return (
        f"repeat x{n} failovers (mean {sum(times) / max(len(times), 1):.2f}s each): "
        f"ops={report.ops} errors={report.errors or 0} lost={report.lost_writes} "
        f"unacked_applied={report.unacked_applied} backwards={report.backwards_reads} "
        f"max_latency={report.max_latency * 1000:.0f}ms | under load: threads {threads1}->{threads2}, "
        f"fds {fds1}->{fds2} | before client / after close: threads {threads0}->{threads3}, fds {fds0}->{fds3}"
        + "".join(f"\n  first {k}: {v}" for k, v in checker.samples.items())
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter load, fewer slots and kills")
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="run only this (repeatable)")
    ap.add_argument("--repeat", type=int, default=0, help="N manual failovers on one client (leak check) instead")
    ap.add_argument("--threads", type=int, default=4, help="checker threads")
    ap.add_argument("-v", "--verbose", action="store_true", help="checker line every second")
    a = ap.parse_args(argv)
    if a.repeat:
        print(repeat_failovers(a.repeat, threads=a.threads, verbose=a.verbose), flush=True)
        return 0
    names = a.scenario or list(SCENARIOS)
    failed = 0
    for name in names:
        t0 = time.monotonic()
        try:
            res = run_fresh(name, a.quick, a.threads, a.verbose)
        except Exception as e:  # noqa: BLE001 - one scenario's failure must not stop the rest
            failed += 1
            print(f"{name:<14} FAILED after {time.monotonic() - t0:.1f}s: {type(e).__name__}: {e}", flush=True)
            continue
        if not res.report.consistent:
            failed += 1
        print(res.line(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
