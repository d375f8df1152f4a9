"""Hedged replica reads on the sync client: one replica is late (a DelayProxy), reads routed to it
are hedged to the other replica within the budget; writes never are; nothing is left unread."""

from __future__ import annotations

import os

import pytest

from clusterpool import ClusterClient, ConfigurationError, HedgePolicy
from hedge_setup import LATE, late_replica_cluster
from waiting import poll


@pytest.fixture(scope="module")
def late():
    with late_replica_cluster() as setup:
        yield setup


@pytest.fixture
def client(late):
    c = ClusterClient(**late.options(read_from=late.pick_late, hedge=HedgePolicy(delay=0.005, budget=1.0)))
    try:
        yield c
    finally:
        c.close()


def _fill(client, prefix, n):
    keys = [f"{prefix}:{i}" for i in range(n)]
    for i, k in enumerate(keys):
        client.writer.set(k, f"v{i}")
    client.wait(2, 1000)  # both replicas have the values before they are read
    return keys


def test_a_late_replica_read_is_answered_right_and_hedged(client):
    keys = _fill(client, "right", 20)
    assert [client.get(k) for k in keys] == [f"v{i}".encode() for i in range(20)]
    h = client.stats().hedges
    assert h.reads == 20 and h.sent == 20
    assert h.won >= 1


def test_writes_are_never_hedged(client):
    for i in range(20):
        client.set(f"w:{i}", i)
    assert client.stats().hedges.reads == 0


def test_a_client_reading_from_primaries_does_not_hedge(late):
    with ClusterClient(**late.options(hedge=True)) as c:
        c.set("p:1", "x")
        assert c.get("p:1") == b"x"
        assert c.stats().hedges.reads == 0


def test_the_budget_caps_hedges(late):
    policy = HedgePolicy(delay=0.005, budget=0.0, burst=3)
    with ClusterClient(**late.options(read_from=late.pick_late, hedge=policy)) as c:
        keys = _fill(c, "budget", 10)
        assert [c.get(k) for k in keys] == [f"v{i}".encode() for i in range(10)]
        h = c.stats().hedges
        assert (h.reads, h.sent, h.suppressed) == (10, 3, 7)


def test_no_connection_is_left_with_an_unread_reply(late, client):
    keys = _fill(client, "unread", 40)
    expected = [f"v{i}".encode() for i in range(40)]
    assert [client.get(k) for k in keys] == expected
    assert client.stats().hedges.held >= 1  # connections to the late replica wait for their reply
    late.proxy.delay = 0.0  # the replica catches up: its late replies arrive, its reads stop hedging
    try:
        poll(lambda: client.get(keys[0]) == expected[0] and client.stats().hedges.held == 0,
             what="held connections to be drained")
        for _ in range(3):  # every pooled connection to the replica answers its own command
            assert [client.get(k) for k in keys] == expected
    finally:
        late.proxy.delay = LATE


def test_threads_sharing_a_hedged_client_each_get_their_own_replies(client):
    from concurrent.futures import ThreadPoolExecutor

    keys = _fill(client, "threads", 40)

    def wrong_replies(t):
        picks = [(t * 7 + i) % 40 for i in range(30)]
        return [(keys[j], got) for j in picks if (got := client.get(keys[j])) != f"v{j}".encode()]

    with ThreadPoolExecutor(8) as pool:  # a thread's exception is raised here
        assert [w for ws in pool.map(wrong_replies, range(8)) for w in ws] == []
    h = client.stats().hedges
    assert h.won >= 1
    assert h.held <= 25  # at most half the late replica's pool (50) waits for late replies


def _exit_code(pid):
    """The forked child's exit code (killed if it does not finish)."""
    def finished():
        got, status = os.waitpid(pid, os.WNOHANG)
        return (status,) if got else None

    try:
        (status,) = poll(finished, timeout=60, what="the forked child to finish")
    except AssertionError:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise
    return os.waitstatus_to_exitcode(status)


def test_a_forked_child_never_reads_the_parents_held_connections(late, client):
    keys = _fill(client, "fork", 20)
    expected = [f"v{i}".encode() for i in range(20)]
    assert [client.get(k) for k in keys] == expected
    assert client.stats().hedges.held >= 1
    pid = os.fork()
    if pid == 0:  # child: its own connections, the parent's held ones forgotten
        code = 1
        try:
            if [client.get(k) for k in keys] == expected:
                code = 0
        except BaseException:  # noqa: BLE001
            code = 2
        finally:
            os._exit(code)
    assert _exit_code(pid) == 0
    late.proxy.delay = 0.0  # the parent drains its held connections and reads its own replies
    try:
        poll(lambda: client.get(keys[0]) == expected[0] and client.stats().hedges.held == 0,
             what="held connections drained")
        assert [client.get(k) for k in keys] == expected
    finally:
        late.proxy.delay = LATE


def test_a_hedged_client_closes_every_socket(late):
    before = len(os.listdir("/proc/self/fd"))
    c = ClusterClient(**late.options(read_from=late.pick_late, hedge=HedgePolicy(delay=0.005, budget=1.0)))
    keys = _fill(c, "close", 10)
    for k in keys:
        c.get(k)
    assert c.stats().hedges.sent == 10
    c.close()
    poll(lambda: len(os.listdir("/proc/self/fd")) <= before, what=f"fd count back to {before}")


def test_a_cached_hedged_read_never_stays_stale(late):
    from clusterpool import CacheConfig

    options = late.options(read_from=late.pick_late, hedge=HedgePolicy(delay=0.005, budget=1.0),
                           cache_config=CacheConfig())
    with ClusterClient(**options) as c:
        c.writer.set("cached:warm", "w")
        c.writer.set("cached:1", "old")
        c.wait(2, 1000)
        late.proxy.delay = 0.0  # on time until the late replica's invalidation link tracks our connection
        try:
            poll(lambda: c.get("cached:warm") == b"w" and c.stats().cache.hits >= 1, what="a cached read")
        finally:
            late.proxy.delay = LATE
        won = c.stats().hedges.won
        assert c.get("cached:1") == b"old"  # the hedge's reply: the late replica has not run the GET yet
        assert c.stats().hedges.won == won + 1
        # written (by another client) before the late replica runs that GET and starts tracking the
        # key for us, so no invalidation would ever drop "old" had the hedge's reply been cached
        with ClusterClient(startup_nodes=late.cluster.startup_nodes) as other:
            other.set("cached:1", "new")
            other.wait(2, 1000)
        poll(lambda: c.get("cached:1") == b"new", what="the new value read, not a cached old one")


@pytest.mark.parametrize("bad", [0.5, "yes", HedgePolicy], ids=repr)
def test_a_bad_hedge_option_is_a_configuration_error(bad):
    with pytest.raises(ConfigurationError, match="hedge"):
        ClusterClient(startup_nodes=[("127.0.0.1", 7000)], hedge=bad)


def test_prometheus_counts_hedges(client):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from clusterpool.metrics import PoolCollector

    for k in _fill(client, "prom", 5):
        client.get(k)
    registry = CollectorRegistry()
    registry.register(PoolCollector(client))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    h = client.stats().hedges
    assert families["clusterpool_hedge_sent"].samples[0].value == h.sent == 5
    assert families["clusterpool_hedge_reads"].samples[0].value == 5


def test_opentelemetry_counts_hedges_by_outcome(client):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from clusterpool import otel

    reader = InMemoryMetricReader()
    inst = otel.instrument(client, meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        for k in _fill(client, "otel", 5):
            client.get(k)
        data = reader.get_metrics_data()
        points = {p.attributes["clusterpool.hedge.outcome"]: p.value
                  for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
                  if m.name == "clusterpool.client.hedges" for p in m.data.data_points}
        h = client.stats().hedges
        assert points == {"sent": 5, "won": h.won, "suppressed": 0}
    finally:
        inst.uninstrument()
