"""Chaos under load, checked by the consistency checker (scripts/consistency.py).

Each test takes a private cluster (``fresh_cluster``), waits until its replicas
finished their initial sync (redis 7 syncs diskless after a 5 s delay: a primary
lost before that takes every write with it, which is the server's doing), runs
the checker in the background with a client that does not retry writes of
unknown outcome, injects one fault and checks what the caller saw. Bounded: the
checker has a time cap, every harness wait a timeout; about a minute in total.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from clusterpool.testing import chaos
from clusterpool import key_slot
from waiting import poll

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def assert_clean(res: chaos.Result) -> None:
    r = res.report
    assert r.errors == {}, (r.errors, res.checker.samples if res.checker else None)
    assert r.lost_writes == 0, res.checker.anomalies[:5]
    assert r.unacked_applied == 0
    assert r.backwards_reads == 0, res.checker.anomalies[:5]
    assert r.writes > 100, r.line()


def test_manual_failover_surfaces_no_error_and_loses_nothing(fresh_cluster):
    """CLUSTER FAILOVER is coordinated: the replica catches up before taking over, clients
    of the old primary get MOVED. The client must follow without surfacing anything."""
    res = chaos.run_scenario("failover", fresh_cluster, quick=True)
    assert_clean(res)


def test_slot_migration_under_load_surfaces_no_error(fresh_cluster):
    """~50 slots holding checker keys move between primaries while they are read and INCRed:
    ASK/MOVED/TRYAGAIN are followed, nothing surfaces, nothing is lost."""
    res = chaos.run_scenario("migrate", fresh_cluster, quick=True)
    assert_clean(res)
    assert "moved 50 loaded slots" in res.notes[0]


def test_client_kill_on_all_nodes_loses_nothing(fresh_cluster):
    """CLIENT KILL TYPE normal on every node, three times, under load.

    GETs on a killed connection are retried on a fresh one, so they never
    surface. INCR is a write: if the connection is killed after the command was
    sent and before the reply, the client cannot know whether it applied and
    raises UnknownOutcomeError by design (retrying could apply it twice). The
    client checks a pooled connection before sending a write on it, so only a
    kill landing between that check and the reply can cause one, and each killed
    connection can carry at most one command in flight: allow UnknownOutcomeError
    only, at most one per killed connection. Nothing acknowledged may be lost. An
    unacknowledged INCR can have been applied (killed after the server executed
    it), so "unacked but applied" may not exceed the UnknownOutcomeErrors. Killed
    connections say nothing about the nodes: no breaker opens.
    """
    res = chaos.run_scenario("client_kill", fresh_cluster, quick=True)
    r = res.report
    assert set(r.errors) <= {"UnknownOutcomeError"}, (r.errors, res.checker.samples)
    assert r.error_count <= res.marks["killed"], r.line()
    assert r.unacked_applied <= r.errors.get("UnknownOutcomeError", 0)
    assert r.lost_writes == 0 and r.backwards_reads == 0, res.checker.anomalies[:5]
    assert res.breaker_opened == [], res.breaker_opened


def test_kill_9_of_a_primary_recovers_and_leaks_nothing(fresh_cluster):
    """kill -9 of a primary under load, then its replica is promoted.

    During the fault window only ConnectionError-family errors may surface
    (connection refused until the map moves on, NodeUnavailableError when the
    retry budget ends before the failover does, UnknownOutcomeError for an INCR
    in flight when the process died) and timeouts. Async replication can lose
    the last acknowledged INCRs of the dead primary: a lost write is allowed only
    on a slot the dead primary served, and only a few. Once wait_promoted
    returns, no operation started after it may fail and the client keeps
    serving. After close, threads and fds are back to what they were.
    """
    c = fresh_cluster
    chaos.wait_synced(c)
    threads0, fds0 = chaos.thread_count(), chaos.fd_count()
    client = chaos.make_client(c)
    checker = chaos.Checker(client, keys=1000, seed=3, report_every=None)
    victim = c.primaries()[0]
    victim_slots = set(c.slots_of(victim))
    box = {}
    stop = threading.Event()
    t = threading.Thread(
        target=lambda: box.update(r=checker.run(seconds=120, threads=4, stop_event=stop)), daemon=True
    )
    try:
        client.connect()
        t.start()
        time.sleep(0.5)
        t_fault = time.monotonic()
        c.kill(victim)
        c.wait_promoted(victim, timeout=30)
        t_promoted = time.monotonic()
        ops_at_promotion = checker.snapshot().ops
        # the client keeps serving: 500 more operations (a condition, not a rate)
        poll(lambda: checker.snapshot().ops - ops_at_promotion >= 500, 60, what="500 operations after the promotion")
    finally:
        stop.set()
        t.join(60)
    assert not t.is_alive(), "checker hung"
    try:
        c.restart(victim, timeout=30)
        report = checker.verify()
    finally:
        client.close()
    for name, cls in checker.types.items():
        assert issubclass(cls, (redis.ConnectionError, redis.TimeoutError)), (name, checker.samples[name])
    late = [i for i in checker.incidents if i.error and i.end - i.latency >= t_promoted]
    assert not late, late[:3]
    for a in checker.anomalies:
        assert a.at >= t_fault and key_slot(a.key.encode()) in victim_slots, a
    assert report.lost_writes <= 20, report.line()
    time.sleep(0.2)
    assert chaos.thread_count() <= threads0, (threads0, chaos.thread_count())
    assert chaos.fd_count() <= fds0, (fds0, chaos.fd_count())


def test_node_added_and_removed_under_load_surfaces_no_error(fresh_cluster):
    """A node joins, slots move to it and back while they are used, then it is removed:
    the client follows every move and drops the node without surfacing anything."""
    res = chaos.run_scenario("add_remove", fresh_cluster, quick=True)
    assert_clean(res)


def test_replica_restart_under_load_surfaces_no_error(fresh_cluster):
    res = chaos.run_scenario("restart", fresh_cluster, quick=True)
    assert_clean(res)


def test_paused_primary_is_failed_over_and_the_client_recovers(fresh_cluster):
    """SIGSTOP of a primary for longer than the node timeout, then SIGCONT: its replica takes
    over. Only ConnectionError-family errors may surface (a write in flight on the stopped
    node ends in UnknownOutcomeError), nothing reads backwards, and the client serves again."""
    res = chaos.run_scenario("pause", fresh_cluster, quick=True)
    r = res.report
    for name, cls in res.checker.types.items():
        assert issubclass(cls, (redis.ConnectionError, redis.TimeoutError)), (name, res.checker.samples[name])
    assert r.backwards_reads == 0, res.checker.anomalies[:5]
    assert r.lost_writes <= 20, r.line()
    assert r.writes > 100, r.line()
