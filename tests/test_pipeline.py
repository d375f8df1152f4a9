"""Pipelines, transactions and the non-atomic multi-key helpers against real clusters."""

from __future__ import annotations

import uuid

import pytest
import redis
from redis import exceptions as rx

from clusterpool import ClusterClient, CrossSlotError, key_slot


def uid():
    return uuid.uuid4().hex[:10]


def raw(cluster, port):
    return redis.Redis(host=cluster.host, port=port, socket_timeout=5)


def cmdstat_calls(cluster, port, cmd):
    with raw(cluster, port) as r:
        return int(r.info("commandstats").get(f"cmdstat_{cmd}", {}).get("calls", 0))


def total_calls(cluster, ports, cmd):
    return sum(cmdstat_calls(cluster, p, cmd) for p in ports)


@pytest.fixture
def client(cluster):
    c = ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True)
    yield c
    c.close()


# ---------------------------------------------------------------- pipelines


def test_ten_thousand_commands_over_all_shards_in_order(client, cluster):
    p = uid()
    keys = [f"{p}:{i}" for i in range(5000)]
    assert {client.node_for(k).port for k in keys} == set(cluster.primaries())
    pipe = client.pipeline()
    expected = []
    for i, k in enumerate(keys):
        pipe.set(k, f"v{i}")
        pipe.get(k)
        expected += [True, f"v{i}"]
    assert len(pipe) == 10_000
    assert pipe.execute() == expected


def test_error_returned_in_place_without_raise(client):
    k = f"{{{uid()}}}:list"
    pipe = client.pipeline()
    pipe.set(k, "string").lpush(k, "x").get(k)
    res = pipe.execute(raise_on_error=False)
    assert res[0] is True and res[2] == "string"
    assert isinstance(res[1], rx.ResponseError) and "WRONGTYPE" in str(res[1])


def test_error_raises_response_error_with_raise_on_error(client):
    k = f"{{{uid()}}}:list"
    pipe = client.pipeline()
    pipe.set(k, "string").lpush(k, "x").get(k)
    with pytest.raises(rx.ResponseError, match="WRONGTYPE"):
        pipe.execute()
    assert client.get(k) == "string"  # the other commands still ran


def test_reader_pipeline_reads_from_replicas(client, cluster):
    p = uid()
    keys = [f"{p}:{i}" for i in range(300)]
    client.mset_nonatomic({k: k for k in keys})
    replicas, primaries = cluster.replicas(), cluster.primaries()
    before_r = total_calls(cluster, replicas, "get")
    before_p = total_calls(cluster, primaries, "get")
    pipe = client.reader.pipeline()
    for k in keys:
        pipe.get(k)
    res = pipe.execute()
    # replication is asynchronous: a replica may not have every value yet, but never a wrong one
    assert all(v in (None, k) for v, k in zip(res, keys))
    assert total_calls(cluster, replicas, "get") - before_r == len(keys)
    assert total_calls(cluster, primaries, "get") == before_p


def test_reader_pipeline_refuses_writes_before_sending(client):
    pipe = client.reader.pipeline()
    pipe.get("a").set("b", 1)
    with pytest.raises(Exception, match="may write"):
        pipe.execute()


@pytest.mark.slow
@pytest.mark.chaos
def test_pipeline_during_and_after_slot_migration(fresh_cluster):
    c = fresh_cluster
    tag = uid()
    keys = [f"{{{tag}}}:{i}" for i in range(40)]
    slot = key_slot(keys[0].encode())
    src = c.slot_owner(slot)
    dst = next(p for p in c.primaries() if p != src)
    with ClusterClient(startup_nodes=c.startup_nodes, decode_responses=True) as client:
        client.mset_nonatomic({k: "old" for k in keys})
        c.begin_migration(slot, dst)
        assert c.migrate_keys(slot, dst, count=len(keys) // 2) == len(keys) // 2

        pipe = client.pipeline()
        for k in keys:
            pipe.get(k)
            pipe.set(k, f"new-{k}")
            pipe.get(k)
        expected = []
        for k in keys:
            expected += ["old", True, f"new-{k}"]
        assert pipe.execute() == expected

        c.finish_migration(slot, dst)
        pipe = client.pipeline()
        for k in keys:
            pipe.get(k)
            pipe.set(k, "final")
        assert pipe.execute() == [v for k in keys for v in (f"new-{k}", True)]
        assert client.mget_nonatomic(keys) == ["final"] * len(keys)
        assert client.node_for(keys[0]).port == dst


@pytest.mark.chaos
def test_transaction_follows_ask_to_the_importing_node_mid_migration(fresh_cluster):
    c = fresh_cluster
    tag = uid()
    keys = [f"{{{tag}}}:{i}" for i in range(6)]
    slot = key_slot(keys[0].encode())
    src = c.slot_owner(slot)
    dst = next(p for p in c.primaries() if p != src)
    with ClusterClient(startup_nodes=c.startup_nodes, decode_responses=True) as client:
        client.mset_nonatomic({k: "1" for k in keys})
        c.begin_migration(slot, dst)
        assert c.migrate_keys(slot, dst) == len(keys)  # every key now lives on dst: the source answers ASK
        pipe = client.pipeline(transaction=True)
        pipe.incr(keys[0]).incr(keys[1]).mget(keys[0], keys[1])
        assert pipe.execute() == [2, 2, ["2", "2"]]
        c.finish_migration(slot, dst)
        assert client.mget_nonatomic(keys[:2]) == ["2", "2"]


# ---------------------------------------------------------------- transactions


def test_transaction_commits_multi_exec_results(client):
    t = uid()
    a, b = f"{{{t}}}:a", f"{{{t}}}:b"
    pipe = client.pipeline(transaction=True)
    pipe.set(a, 1).incr(a).set(b, "x").mget(a, b)
    assert pipe.execute() == ["OK", 2, "OK", ["2", "x"]]  # EXEC's replies unparsed, as RedisCluster's


def test_transaction_aborts_on_watch_conflict(client, cluster):
    k = f"{{{uid()}}}:w"
    client.set(k, "0")
    pipe = client.pipeline(transaction=True)
    pipe.watch(k)
    assert pipe.get(k) == "0"  # immediate while watching
    with ClusterClient(startup_nodes=cluster.startup_nodes) as other:
        other.set(k, "changed")
    pipe.multi()
    pipe.set(k, "mine")
    with pytest.raises(rx.WatchError):
        pipe.execute()
    assert client.get(k) == "changed"


def test_transaction_helper_retries_until_success(client, cluster):
    k = f"{{{uid()}}}:counter"
    client.set(k, 10)
    calls = []
    other = ClusterClient(startup_nodes=cluster.startup_nodes)

    def incr(pipe):
        calls.append(1)
        cur = int(pipe.get(k))
        if len(calls) == 1:
            other.incr(k)  # conflict injected once, between WATCH and EXEC
        pipe.multi()
        pipe.set(k, cur + 1)

    try:
        assert client.transaction(incr, k) == ["OK"]
    finally:
        other.close()
    assert len(calls) == 2
    assert client.get(k) == "12"


def test_cross_slot_transaction_refused_before_sending(client, cluster):
    p = uid()
    a, b = f"{p}:a", f"{p}:b"
    assert key_slot(a.encode()) != key_slot(b.encode())
    before = total_calls(cluster, cluster.primaries(), "multi")
    pipe = client.pipeline(transaction=True)
    pipe.set(a, 1).set(b, 2)
    with pytest.raises(CrossSlotError):
        pipe.execute()
    assert total_calls(cluster, cluster.primaries(), "multi") == before
    assert client.exists(a, b) == 0


def test_hash_tagged_transaction_pipeline(client):
    t = uid()
    keys = [f"user:{{{t}}}:{f}" for f in ("name", "mail", "visits")]
    with client.pipeline(transaction=True) as pipe:
        pipe.set(keys[0], "ada").set(keys[1], "ada@x").incrby(keys[2], 3).mget(*keys)
        assert pipe.execute() == ["OK", "OK", 3, ["ada", "ada@x", "3"]]


# ---------------------------------------------------------------- multi-key helpers


def test_mset_mget_nonatomic_thousand_keys_in_order_with_missing(client, cluster):
    p = uid()
    keys = [f"{p}:{i}" for i in range(1000)]
    assert len({key_slot(k.encode()) for k in keys}) > 500
    present = {k: f"v{i}" for i, k in enumerate(keys) if i % 3}
    assert all(client.mset_nonatomic(present))
    asked = keys[::-1]  # order of the question, not of slots or insertion
    assert client.mget_nonatomic(asked) == [present.get(k) for k in asked]


def test_mget_nonatomic_repeated_keys(client):
    p = uid()
    client.set(f"{p}:x", "1")
    assert client.mget_nonatomic([f"{p}:x", f"{p}:nope", f"{p}:x"]) == ["1", None, "1"]


def test_delete_and_exists_across_slots(client):
    p = uid()
    keys = [f"{p}:{i}" for i in range(50)]
    client.mset_nonatomic({k: 1 for k in keys})
    missing = f"{p}:missing"
    assert client.exists(*keys, missing) == 50
    assert client.exists(keys[0], keys[0]) == 2  # as Redis: counted per argument
    assert client.delete(*keys[:20], missing) == 20
    assert client.exists(*keys) == 30
    assert client.unlink(*keys) == 30
    assert client.exists(*keys) == 0


def test_aborted_transaction_returns_its_connection(client):
    """EXECABORT (a command refused while queuing) must not keep the pooled connection."""
    k = f"{{{uid()}}}:x"
    client.set(k, 1)  # open the pools
    for _ in range(3):
        pipe = client.pipeline(transaction=True)
        pipe.set(k, 2).execute_command("INCRBY", k)  # wrong arity: refused at queue time
        with pytest.raises(rx.ResponseError):
            pipe.execute()
    assert client.stats().in_use == 0
    assert client.get(k) == "1"  # nothing of the aborted transactions ran


def test_reader_transaction_refuses_writes_before_sending(client, cluster):
    k = f"{{{uid()}}}:r"
    before = total_calls(cluster, cluster.primaries(), "multi")
    pipe = client.reader.pipeline(transaction=True)
    pipe.get(k).set(k, 1)
    with pytest.raises(Exception, match="may write"):
        pipe.execute()
    assert total_calls(cluster, cluster.primaries(), "multi") == before
    assert client.get(k) is None


@pytest.mark.slow
@pytest.mark.chaos
def test_transaction_follows_moved_slot(fresh_cluster):
    c = fresh_cluster
    k = f"{{{uid()}}}:t"
    slot = key_slot(k.encode())
    # health_interval: no CLUSTER INFO watch to notice the move before the MOVED reply does
    with ClusterClient(startup_nodes=c.startup_nodes, decode_responses=True, health_interval=3600) as client:
        client.set(k, 1)
        src = c.slot_owner(slot)
        dst = next(p for p in c.primaries() if p != src)
        c.move_slot(slot, dst)  # the client's map still says src
        pipe = client.pipeline(transaction=True)
        pipe.incr(k).get(k)
        assert pipe.execute() == [2, "2"]
        assert client.node_for(k).port == dst
