"""Failover against real processes: kill -9, manual CLUSTER FAILOVER, SIGSTOP."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis import exceptions as rx

import clusterpool
from clusterpool import ClusterClient
from waiting import poll

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def raw(cluster, port):
    return redis.Redis(host=cluster.host, port=port, socket_timeout=5)


def cmdstat_calls(cluster, port, cmd):
    with raw(cluster, port) as r:
        return int(r.info("commandstats").get(f"cmdstat_{cmd}", {}).get("calls", 0))


def keys_of(cluster, port, n, prefix):
    slots = set(cluster.slots_of(port))
    out, i = [], 0
    while len(out) < n:
        k = f"{prefix}{i}"
        if clusterpool.key_slot(k.encode()) in slots:
            out.append(k)
        i += 1
    return out


class Loop:
    """A background thread running `op(i)` until stopped; errors are kept with the time they began."""

    def __init__(self, op):
        self.op = op
        self.errors: list[tuple[float, BaseException]] = []
        self.count = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.op(i)
            except Exception as e:  # noqa: BLE001
                self.errors.append((began, e))
            self.count += 1
            i += 1

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(60)

    def errors_since(self, t0):
        return [e for began, e in self.errors if began >= t0]

    def wait_ops(self, n, what="operations"):
        start = self.count
        poll(lambda: self.count >= start + n, what=what)


def test_commands_succeed_on_the_new_primary_after_kill_9(fresh_cluster):
    c = fresh_cluster
    victim = c.primaries()[0]
    keys = keys_of(c, victim, 20, "kill")
    client = ClusterClient(startup_nodes=c.startup_nodes, socket_timeout=1.0)
    try:
        for k in keys:
            client.set(k, "v")

        def op(i):
            k = keys[i % len(keys)]
            client.set(k, i)
            client.get(k)

        with Loop(op) as loop:
            loop.wait_ops(50)
            c.kill(victim)
            new_primary = c.wait_promoted(victim)
            poll(
                lambda: client.node_for(keys[0]).port == new_primary,
                what="client to route the dead primary's slots to the new one",
            )
            settled = time.monotonic()
            loop.wait_ops(200, "operations after the failover")
        assert not loop.errors_since(settled), loop.errors_since(settled)[:3]
        before = cmdstat_calls(c, new_primary, "get")
        for k in keys:
            client.set(k, "after")
            assert client.get(k) == b"after"
        assert cmdstat_calls(c, new_primary, "get") - before >= len(keys)
    finally:
        client.close()


def test_manual_failover_loses_no_acknowledged_increment(fresh_cluster):
    c = fresh_cluster
    primary = c.primaries()[0]
    replica = c.replicas_of(primary)[0]
    keys = keys_of(c, primary, 10, "ctr")
    acked = dict.fromkeys(keys, 0)
    client = ClusterClient(startup_nodes=c.startup_nodes)
    try:

        def op(i):
            k = keys[i % len(keys)]
            client.incr(k)
            acked[k] += 1

        with Loop(op) as loop:
            loop.wait_ops(200)
            c.failover(replica)
            loop.wait_ops(200, "increments after the failover")
        assert not loop.errors, [e for _, e in loop.errors[:3]]
        assert c.role(replica) == "primary"
        with raw(c, replica) as r:
            for k in keys:
                assert int(r.get(k)) == acked[k]
                assert int(client.get(k)) == acked[k]
    finally:
        client.close()


def test_client_keeps_serving_after_a_paused_primary_is_replaced(fresh_cluster):
    c = fresh_cluster
    victim = c.primaries()[0]
    keys = keys_of(c, victim, 10, "pause")
    c.node_id(victim)
    c.replicas_of(victim)
    client = ClusterClient(startup_nodes=c.startup_nodes, socket_timeout=1.0)
    try:
        for k in keys:
            client.set(k, "v")
        c.pause(victim)
        try:
            new_primary = c.wait_promoted(victim)
            poll(
                lambda: client.node_for(keys[0]).port == new_primary,
                what="client to route the paused primary's slots to the new one",
            )
            for i, k in enumerate(keys * 10):
                client.set(k, i)
                assert client.get(k) == str(i).encode()
        finally:
            c.resume(victim)
        c.wait_ok(30)
        assert c.role(victim) == "replica"
        for i, k in enumerate(keys * 10):
            client.set(k, i)
            assert client.get(k) == str(i).encode()
    finally:
        client.close()


def test_retry_timeout_rides_out_a_failover_a_small_retry_count_would_not(fresh_cluster):
    from redis.backoff import EqualJitterBackoff
    from redis.retry import Retry

    c = fresh_cluster
    one_retry = Retry(EqualJitterBackoff(cap=0.2, base=0.05), 1)
    patient = ClusterClient(startup_nodes=c.startup_nodes, retry=one_retry, retry_timeout=30,
                            socket_timeout=1, socket_connect_timeout=0.5)
    hasty = ClusterClient(startup_nodes=c.startup_nodes, retry=one_retry,
                          socket_timeout=1, socket_connect_timeout=0.5)
    try:
        key = "patient:{1}"
        patient.set(key, "before")
        hasty.set(key, "before")
        victim = patient.node_for(key).port
        c.kill(victim)
        with pytest.raises(rx.ConnectionError):
            hasty.set(key, "x")  # two attempts, ~0.3 s of backoff: long before any promotion
        assert patient.set(key, "after") is True  # waits (up to 30 s) for the replica to take over
        assert patient.node_for(key).port != victim
    finally:
        patient.close()
        hasty.close()


def test_retry_timeout_must_be_positive():
    with pytest.raises(clusterpool.ConfigurationError, match="retry_timeout"):
        ClusterClient("127.0.0.1", 7000, retry_timeout=0)
