"""Drop-in compatibility of pipelines, transactions, pub/sub and the non-atomic helpers.

Every test runs twice through one parametrized fixture: once on redis-py's
`redis.cluster.RedisCluster`, once on `clusterpool.ClusterClient`, both on the
session cluster. The expected replies, exception classes and messages are
literals, so both clients must produce exactly the same ones; where redis-py's
wording changed between the releases we support, the test compares the two
clients' messages at run time (`same_error`) instead.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from typing import Any

import pytest
from redis import exceptions as rx
from redis.cluster import ClusterNode, RedisCluster
from redis.cluster import ClusterPipeline as RedisClusterPipeline

from clusterpool import ClusterClient, key_slot
from clusterpool.batchrules import BLOCKED_METHODS
from compat import KINDS, REDIS_PY, make_client
from waiting import poll


@pytest.fixture(params=KINDS, scope="module")
def r(request: pytest.FixtureRequest, cluster: Any) -> Any:
    """The same scenario on both clients (decode_responses=True), made as tests/compat.py makes them."""
    client = make_client(request.param, cluster, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def rc(cluster: Any) -> Any:
    """redis-py's RedisCluster: where a message's wording follows redis-py's version, ours must
    say what this one says (compared at run time, never a literal of one version)."""
    client = make_client(KINDS[0], cluster, decode_responses=True)
    yield client
    client.close()


def same_error(exc: type[BaseException], scenario: Any, ours: Any, reference: Any) -> BaseException:
    """`scenario(client)` raises `exc` on both clients, with the same text; ours' error is returned."""
    mine = raises(exc, scenario, ours)
    assert str(mine) == str(raises(exc, scenario, reference))
    return mine


@pytest.fixture
def p(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to this test and client."""
    return f"cb:{request.node.name[:40]}:{uuid.uuid4().hex[:8]}"


def two_slots(p: str) -> tuple[str, str]:
    """Two keys in different slots."""
    a = f"{p}:a"
    b = next(f"{p}:b{i}" for i in range(100) if key_slot(f"{p}:b{i}".encode()) != key_slot(a.encode()))
    return a, b


def raises(exc: type[BaseException], fn: Any, *args: Any, **kwargs: Any) -> BaseException:
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    return info.value


WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


# ---------------------------------------------------------------- pipelines


def test_pipeline_replies_are_parsed(r, p):
    a, b = two_slots(p)
    pipe = r.pipeline()
    pipe.set(a, "v").get(a).incr(b).expire(b, 100).hset(f"{p}:h", "f", "v").hgetall(f"{p}:h")
    pipe.sadd(f"{p}:s", "x").smembers(f"{p}:s").zadd(f"{p}:z", {"m": 1}).zscore(f"{p}:z", "m")
    assert len(pipe) == 10 and bool(pipe)
    assert pipe.execute() == [True, "v", 1, True, 1, {"f": "v"}, 1, {"x"}, 1, 1.0]
    assert len(pipe) == 0


def test_pipeline_error_names_the_command(r, p):
    k = f"{p}:k"
    pipe = r.pipeline()
    pipe.set(k, "string").lpush(k, "x").get(k)
    e = raises(rx.ResponseError, pipe.execute)
    assert str(e) == f"Command # 2 (LPUSH {k} x) of pipeline caused error: {WRONGTYPE}"
    assert r.get(k) == "string"


def test_pipeline_error_truncates_long_arguments(r, p):
    k = f"{p}:k"
    r.set(k, "string")
    pipe = r.pipeline()
    pipe.get(k).lpush(k, "x" * 300, "y")
    e = raises(rx.ResponseError, pipe.execute)
    text = textwrap.shorten(f"LPUSH {k} {'x' * 300} y", width=100, placeholder="...", break_long_words=True)
    assert len(text) <= 100
    assert str(e) == f"Command # 2 ({text}) of pipeline caused error: {WRONGTYPE}"


def test_pipeline_errors_in_place_are_not_annotated(r, p):
    k = f"{p}:k"
    pipe = r.pipeline()
    pipe.set(k, "string").lpush(k, "x")
    res = pipe.execute(raise_on_error=False)
    assert res[0] is True
    assert type(res[1]) is rx.ResponseError and str(res[1]) == WRONGTYPE


@pytest.mark.parametrize("method", ["multi", "discard", "watch", "unwatch"])
def test_transaction_methods_refused_on_a_plain_pipeline(r, p, method):
    args = (f"{p}:k",) if method == "watch" else ()
    e = raises(rx.RedisClusterException, getattr(r.pipeline(), method), *args)
    assert str(e) == f"method {method}() is not supported outside of transactional context"


def test_pipeline_shard_hint(r, p):
    assert r.pipeline(shard_hint=None).set(f"{p}:k", 1).execute() == [True]
    e = raises(rx.RedisClusterException, r.pipeline, shard_hint="x")
    assert str(e) == "shard_hint is deprecated in cluster mode"
    e = raises(rx.RedisClusterException, r.transaction, lambda pipe: None, shard_hint="x")
    assert str(e) == "shard_hint is deprecated in cluster mode"


@pytest.mark.parametrize("command", ["delete", "unlink"])
def test_pipeline_refuses_multi_key_delete_across_slots(r, p, command):
    a, b = two_slots(p)
    pipe = r.pipeline()
    e = raises(rx.RedisClusterException, getattr(pipe, command), a, b)
    verb = "deleting" if command == "delete" else "unlinking"
    assert str(e) == f"{verb} multiple keys is not implemented in pipeline command"
    assert len(pipe) == 0
    r.set(a, 1)
    getattr(pipe, command)(a)  # RedisCluster returns None here, clusterpool the pipeline (for chaining)
    assert pipe.execute() == [1]


KEYLESS_BLOCKED = [
    ("ping", ()), ("info", ()), ("dbsize", ()), ("keys", ()), ("time", ()), ("echo", ("x",)),
    ("randomkey", ()), ("lastsave", ()), ("client_list", ()), ("client_getname", ()),
    ("config_get", ("maxmemory",)), ("script_load", ("return 1",)), ("script_flush", ()),
    ("slowlog_len", ()), ("flushall", ()), ("flushdb", ()), ("scan", ()), ("readonly", ()),
    ("mget_nonatomic", (["a", "b"],)), ("mset_nonatomic", ({"a": 1},)),
]


@pytest.mark.parametrize("method,args", KEYLESS_BLOCKED, ids=[m for m, _ in KEYLESS_BLOCKED])
def test_pipeline_blocks_what_redis_cluster_blocks(r, method, args):
    for transaction in (False, True):
        pipe = r.pipeline(transaction=transaction)
        e = raises(rx.RedisClusterException, getattr(pipe, method), *args)
        assert str(e) == f"ERROR: Calling pipelined function {method} is blocked when running redis in cluster mode..."
        assert len(pipe) == 0


CROSS_SLOT_BLOCKED = ["mget", "mset", "msetnx", "rename", "sinter", "sunion", "sdiff", "pfcount", "smove_",
                      "rpoplpush"]


@pytest.mark.parametrize("method", CROSS_SLOT_BLOCKED)
def test_pipeline_blocks_multi_key_commands_across_slots(r, p, method):
    a, b = two_slots(p)
    calls = {
        "mget": ("mget", (a, b)), "mset": ("mset", ({a: 1, b: 2},)), "msetnx": ("msetnx", ({a: 1, b: 2},)),
        "rename": ("rename", (a, b)), "sinter": ("sinter", (a, b)), "sunion": ("sunion", (a, b)),
        "sdiff": ("sdiff", (a, b)), "pfcount": ("pfcount", (a, b)), "smove_": ("smove", (a, b, "m")),
        "rpoplpush": ("rpoplpush", (a, b)),
    }
    name, args = calls[method]
    pipe = r.pipeline()
    e = raises(rx.RedisClusterException, getattr(pipe, name), *args)
    assert str(e) == f"ERROR: Calling pipelined function {name} is blocked when running redis in cluster mode..."


def test_pipeline_command_with_keys_in_two_slots(r, p):
    a, b = two_slots(p)
    pipe = r.pipeline()
    pipe.set(a, 1).execute_command("MGET", a, b)  # not the blocked method: refused when planned
    e = raises(rx.RedisClusterException, pipe.execute)
    assert str(e) == "MGET - all keys must map to the same key slot"
    assert r.exists(a) == 0


def test_pipeline_target_nodes(r, p, cluster):
    a = f"{p}:a"
    owner = cluster.slot_owner(key_slot(a.encode()))
    elsewhere = next(q for q in cluster.primaries() if q != owner)
    pipe = r.pipeline()
    pipe.execute_command("SET", a, "1", target_nodes=[ClusterNode(cluster.host, elsewhere)])  # MOVED: followed
    pipe.execute_command("GET", a, target_nodes=ClusterNode(cluster.host, owner))
    pipe.execute_command("ECHO", "hi", target_nodes=ClusterNode(cluster.host, elsewhere))
    # the GET ran in the first round, before the redirected SET was re-sent: the same in both clients
    assert pipe.execute() == [True, None, "hi"]
    assert r.get(a) == "1"


def test_pipeline_context_manager_resets(r, p):
    with r.pipeline() as pipe:
        pipe.set(f"{p}:k", 1)
        assert len(pipe) == 1
    assert len(pipe) == 0
    assert r.get(f"{p}:k") is None


def test_pipeline_annotate_exception(r, p):
    e = rx.ResponseError("boom")
    r.pipeline().annotate_exception(e, 3, ("SET", f"{p}:k", b"v"))
    assert str(e) == f"Command # 3 (SET {p}:k v) of pipeline caused error: boom"


def test_two_pipelines_of_one_client_queue_apart(r, p):
    a, b = two_slots(p)
    one, two = r.pipeline(), r.pipeline()
    assert one.set(a, "1").get(a) is one
    two.set(b, "2")
    one.incr(a)
    assert two.get(b).execute() == [True, "2"]
    assert one.execute() == [True, "1", 2]


def test_every_blocked_method_is_refused_whatever_its_arguments(r):
    """Each method the installed RedisCluster blocks in pipelines, called without arguments."""
    methods = [m for m in BLOCKED_METHODS if callable(getattr(RedisClusterPipeline, m, None))]
    assert "mget" in methods and "ping" in methods
    for transaction in (False, True):
        pipe = r.pipeline(transaction=transaction)
        for method in methods:
            e = raises(rx.RedisClusterException, getattr(pipe, method))
            assert str(e) == f"ERROR: Calling pipelined function {method} is blocked when running redis in cluster mode..."
        assert len(pipe) == 0


def test_pipeline_error_shortens_a_long_command(r, p):
    k = f"{p}:k"
    pipe = r.pipeline()
    pipe.set(k, "string").hset(k, "aaaa" * 30, "v", mapping={"f": "x" * 80})
    e = raises(rx.ResponseError, pipe.execute)
    text = textwrap.shorten(f"HSET {k} {'aaaa' * 30} v f {'x' * 80}", width=100, placeholder="...",
                            break_long_words=True)
    assert str(e) == f"Command # 2 ({text}) of pipeline caused error: {WRONGTYPE}"


def test_pipeline_touch_and_exists_across_slots_answer_one_summed_count(r, p):
    if isinstance(r, RedisCluster) and REDIS_PY < (8, 2):
        pytest.skip("redis-py 8.1's pipeline runs touch() at once and refuses EXISTS across slots")
    a, b = two_slots(p)
    r.set(a, 1)
    r.set(b, 2)
    pipe = r.pipeline()
    assert pipe.touch(a, b) is pipe
    pipe.exists(a, b, f"{p}:none").execute_command("TOUCH", b, a)
    assert pipe.execute() == [2, 2, 2]


# ---------------------------------------------------------------- transactions


def test_transaction_replies_are_exec_replies(r, p):
    t = f"{{{p}}}"
    pipe = r.pipeline(transaction=True)
    pipe.set(f"{t}:a", "v").get(f"{t}:a").incr(f"{t}:n").expire(f"{t}:n", 100)
    pipe.hset(f"{t}:h", "f", "v").hgetall(f"{t}:h").sadd(f"{t}:s", "x").smembers(f"{t}:s")
    pipe.zadd(f"{t}:z", {"m": 1}).zscore(f"{t}:z", "m").exists(f"{t}:a").ttl(f"{t}:n")
    # RESP3 (redis-py's default): maps and doubles come typed from the protocol (hiredis gives sets as lists)
    assert pipe.execute() == ["OK", "v", 1, 1, 1, {"f": "v"}, 1, ["x"], 1, 1.0, 1, 100]


def test_transaction_keys_in_two_slots(r, p):
    a, b = two_slots(p)
    pipe = r.pipeline(transaction=True)
    pipe.set(a, 1).set(b, 2)
    e = raises(rx.CrossSlotTransactionError, pipe.execute)
    assert str(e) == "All keys involved in a cluster transaction must map to the same slot"
    assert r.exists(a) == 0 and r.exists(b) == 0


def test_transaction_watch_of_another_slot(r, p):
    a, b = two_slots(p)
    pipe = r.pipeline(transaction=True)
    assert pipe.watch(a) is None
    e = raises(rx.CrossSlotTransactionError, pipe.watch, b)
    assert str(e) == "Cannot watch or send commands on different slots"
    e = raises(rx.CrossSlotTransactionError, pipe.get, b)
    assert str(e) == "Cannot watch or send commands on different slots"
    pipe.reset()


def test_transaction_watch_then_command_of_another_slot(r, p):
    a, b = two_slots(p)
    pipe = r.pipeline(transaction=True)
    pipe.watch(a)
    pipe.multi()
    pipe.set(b, 1)
    e = raises(rx.CrossSlotTransactionError, pipe.execute)
    assert str(e) == "All keys involved in a cluster transaction must map to the same slot"
    assert r.exists(b) == 0


def test_transaction_command_with_keys_in_two_slots(r, p):
    a, b = two_slots(p)
    pipe = r.pipeline(transaction=True)
    e = raises(rx.RedisClusterException, pipe.delete, a, b)
    assert str(e) == "DEL - all keys must map to the same key slot"
    e = raises(rx.RedisClusterException, pipe.watch, a, b)
    assert str(e) == "WATCH - all keys must map to the same key slot"


def test_transaction_keyless_command(r, rc):
    e = same_error(rx.RedisClusterException,
                   lambda c: c.pipeline(transaction=True).execute_command("DBSIZE"), r, rc)
    assert str(e).startswith("No way to dispatch this command to Redis Cluster. Missing key.")


def test_transaction_error_at_exec_names_the_command(r, p):
    k = f"{{{p}}}:k"
    pipe = r.pipeline(transaction=True)
    pipe.set(k, "string").lpush(k, "x").get(k)
    e = raises(rx.ResponseError, pipe.execute)
    assert str(e) == f"Command # 2 (LPUSH {k} x) of pipeline caused error: {WRONGTYPE}"
    assert r.get(k) == "string"


def test_transaction_error_at_exec_in_place(r, p):
    k = f"{{{p}}}:k"
    pipe = r.pipeline(transaction=True)
    pipe.set(k, "string").lpush(k, "x")
    res = pipe.execute(raise_on_error=False)
    assert res[0] == "OK"
    assert type(res[1]) is rx.ResponseError and str(res[1]) == WRONGTYPE


def test_transaction_refused_while_queuing_aborts(r, p):
    k = f"{{{p}}}:k"
    pipe = r.pipeline(transaction=True)
    pipe.set(k, 2).execute_command("INCRBY", k)
    e = raises(rx.ResponseError, pipe.execute)
    assert str(e) == (f"Command # 2 (INCRBY {k}) of pipeline caused error: "
                      "wrong number of arguments for 'incrby' command")
    assert r.get(k) is None


def test_transaction_watch_conflict(r, p, cluster):
    k = f"{{{p}}}:w"
    r.set(k, "0")
    pipe = r.pipeline(transaction=True)
    pipe.watch(k)
    assert pipe.get(k) == "0"
    assert pipe.set(f"{{{p}}}:other", 1) is True  # immediate commands are parsed
    with ClusterClient(startup_nodes=cluster.startup_nodes) as other:
        other.set(k, "changed")
    pipe.multi()
    pipe.set(k, "mine")
    e = raises(rx.WatchError, pipe.execute)
    assert str(e) == "Watched variable changed."
    assert r.get(k) == "changed"


def test_transaction_discard_and_unwatch(r, p):
    k = f"{{{p}}}:k"
    pipe = r.pipeline(transaction=True)
    pipe.set(k, 1)
    assert pipe.discard() is None
    assert len(pipe) == 0 and pipe.execute() == []
    assert pipe.watch(k) is None
    assert pipe.unwatch() is None
    pipe.set(k, 2)  # queued again after UNWATCH
    assert len(pipe) == 1
    assert pipe.execute() == ["OK"]
    assert r.get(k) == "2"


def test_transaction_raw_unwatch(r, p):
    k = f"{{{p}}}:k"
    pipe = r.pipeline(transaction=True)
    pipe.watch(k)
    assert pipe.execute_command("UNWATCH") is True
    assert pipe.set(k, 1) is pipe  # queued, no longer run at once
    assert pipe.execute() == ["OK"]


def test_transaction_multi_and_watch_order(r, p):
    k = f"{{{p}}}:k"
    pipe = r.pipeline(transaction=True)
    pipe.multi()
    e = raises(rx.RedisError, pipe.multi)
    assert str(e) == "Cannot issue nested calls to MULTI"
    e = raises(rx.RedisError, pipe.watch, k)
    assert str(e) == "Cannot issue a WATCH after a MULTI"
    pipe.reset()
    pipe.set(k, 1)
    e = raises(rx.RedisError, pipe.multi)
    assert str(e) == "Commands without an initial WATCH have already been issued"
    pipe.reset()


def test_transaction_helper(r, p):
    k = f"{{{p}}}:counter"
    r.set(k, 10)

    def incr(pipe):
        cur = int(pipe.get(k))
        pipe.multi()
        pipe.set(k, cur + 1)
        return cur

    assert r.transaction(incr, k) == ["OK"]
    assert r.transaction(incr, k, value_from_callable=True) == 11
    assert r.get(k) == "12"


def test_empty_transaction(r):
    assert r.pipeline(transaction=True).execute() == []
    assert r.pipeline().execute() == []


# ---------------------------------------------------------------- non-atomic helpers


def test_mget_mset_nonatomic(r, p):
    keys = [f"{p}:{i}" for i in range(40)]
    assert len({key_slot(k.encode()) for k in keys}) > 10
    values = {k: f"v{i}" for i, k in enumerate(keys) if i % 4}
    res = r.mset_nonatomic(values)
    assert res == [True] * len({key_slot(k.encode()) for k in values})
    asked = [*keys[::-1], keys[1]]
    assert r.mget_nonatomic(asked) == [values.get(k) for k in asked]
    assert r.mget_nonatomic(keys[1], keys[2]) == [values[keys[1]], values[keys[2]]]
    assert r.mget_nonatomic([]) == []
    assert r.mset_nonatomic({}) == []


@pytest.mark.parametrize("key", [None, True, 1.5j])
def test_mget_nonatomic_bad_key(r, p, key):
    e = raises(rx.DataError, r.mget_nonatomic, [f"{p}:a", key])
    assert str(e) == f"Invalid input of type: '{type(key).__name__}'. Convert to a bytes, string, int or float first."


def test_mset_nonatomic_bad_value(r, rc, p):
    same_error(rx.DataError, lambda c: c.mset_nonatomic({f"{p}:a": {"nested": 1}}), r, rc)


# ---------------------------------------------------------------- pub/sub


def collect(get: Any, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The next `n` messages from `get` (get_message or get_sharded_message), within a deadline."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = get(timeout=0.2)
        if m is not None:
            out.append(m)
    assert len(out) == n, f"got {out}"
    return out


def msg(kind: str, channel: Any, data: Any, pattern: Any = None) -> dict[str, Any]:
    return {"type": kind, "pattern": pattern, "channel": channel, "data": data}


def on_nodes(cluster: Any, p: str, owners: list[int]) -> list[str]:
    """Channel names whose slots are owned by the given primary ports, in that order."""
    out: list[str] = []
    i = 0
    while len(out) < len(owners):
        ch = f"{p}:ch{i}"
        if cluster.slot_owner(key_slot(ch.encode())) == owners[len(out)]:
            out.append(ch)
        i += 1
    return out


def test_publish_counts_the_classic_subscriber(r, p):
    ch, other = f"{p}:news", f"{p}:other"
    ps = r.pubsub()
    try:
        ps.subscribe(ch)
        assert collect(ps.get_message, 1) == [msg("subscribe", ch, 1)]
        assert r.publish(ch, "hello") == 1  # PUBLISH goes where the subscription is: its slot's primary
        assert collect(ps.get_message, 1) == [msg("message", ch, "hello")]
        assert r.publish(other, "nobody") == 0
    finally:
        ps.close()


def test_classic_subscribe_and_unsubscribe_counts(r, p):
    a, b = f"{p}:a", f"{p}:b"
    ps = r.pubsub()
    try:
        ps.subscribe(a, b)
        ps.psubscribe(f"{p}:*")
        assert collect(ps.get_message, 3) == [msg("subscribe", a, 1), msg("subscribe", b, 2),
                                              msg("psubscribe", f"{p}:*", 3)]
        r.publish(a, "x")
        assert collect(ps.get_message, 2) == [msg("message", a, "x"), msg("pmessage", a, "x", f"{p}:*")]
        ps.unsubscribe(a)
        assert collect(ps.get_message, 1) == [msg("unsubscribe", a, 2)]
        ps.punsubscribe()
        assert collect(ps.get_message, 1) == [msg("punsubscribe", f"{p}:*", 1)]
        assert set(ps.channels) == {b} and not ps.patterns
    finally:
        ps.close()


@pytest.mark.parametrize("how", ["host_port", "node"])
def test_pubsub_on_a_given_node(r, p, cluster, how):
    ch = f"{p}:pinned"
    owner = cluster.slot_owner(key_slot(ch.encode()))
    port = next(q for q in cluster.primaries() if q != owner)  # not where the channel's slot would put it
    if how == "node":
        ps = r.pubsub(node=ClusterNode(cluster.host, port))
    else:
        ps = r.pubsub(host=cluster.host, port=port)
    try:
        node = ps.get_pubsub_node()
        assert (node.host, node.port, node.name) == (cluster.host, port, f"{cluster.host}:{port}")
        ps.subscribe(ch)
        assert collect(ps.get_message, 1) == [msg("subscribe", ch, 1)]
        assert r.publish(ch, "x", target_nodes=node) == 1
        assert r.publish(ch, "y") == 0  # the slot's primary has no local subscriber
        assert collect(ps.get_message, 2) == [msg("message", ch, "x"), msg("message", ch, "y")]
    finally:
        ps.close()


def test_pubsub_node_errors(r, cluster):
    e = raises(rx.DataError, r.pubsub, host=cluster.host)
    assert str(e) == "Passing a host requires passing a port, and vice versa"
    e = raises(rx.DataError, r.pubsub, port=cluster.primaries()[0])
    assert str(e) == "Passing a host requires passing a port, and vice versa"
    e = raises(rx.RedisClusterException, r.pubsub, host=cluster.host, port=1)
    assert str(e) == f"Node {cluster.host}:1 doesn't exist in the cluster"
    e = raises(rx.RedisClusterException, r.pubsub, node=ClusterNode(cluster.host, 2))
    assert str(e) == f"Node {cluster.host}:2 doesn't exist in the cluster"


def test_pubsub_takes_the_node_positionally(r, p, cluster):
    port = cluster.primaries()[1]
    # as RedisCluster's pubsub(node=None, host=None, port=None)
    with r.pubsub(r.get_node(cluster.host, port)) as ps:
        node = ps.get_pubsub_node()
        assert (node.host, node.port) == (cluster.host, port)
        assert node == r.get_node(cluster.host, port) == ps.node  # the client's node object for it
        ps.subscribe(f"{p}:ch")
        assert collect(ps.get_message, 1) == [msg("subscribe", f"{p}:ch", 1)]
        assert r.publish(f"{p}:ch", "x", target_nodes=node) == 1


def test_pubsub_refuses_an_unknown_node_given_positionally(r, cluster):
    e = raises(rx.RedisClusterException, r.pubsub, ClusterNode(cluster.host, 2))
    assert str(e) == f"Node {cluster.host}:2 doesn't exist in the cluster"


def test_get_redis_connection_is_none_until_the_pubsub_has_a_node(r, p):
    with r.pubsub() as ps:
        assert ps.get_redis_connection() is None
        ps.subscribe(f"{p}:ch")  # the first channel's slot owner becomes the pubsub's node
        assert collect(ps.get_message, 1) == [msg("subscribe", f"{p}:ch", 1)]
        assert ps.get_redis_connection() is r.get_node(node_name=ps.get_pubsub_node().name).redis_connection


def test_get_redis_connection_is_the_pubsub_nodes_client(r, p, cluster):
    ch = f"{p}:ch"
    node = r.get_node(cluster.host, cluster.primaries()[2])
    with r.pubsub(node=node) as ps:
        conn = ps.get_redis_connection()
        assert conn is node.redis_connection
        kw = conn.connection_pool.connection_kwargs
        assert (kw["host"], kw["port"]) == (node.host, node.port)
        ps.subscribe(ch)
        assert collect(ps.get_message, 1) == [msg("subscribe", ch, 1)]
        assert conn.pubsub_numsub(ch) == [(ch, 1)]  # it runs commands on the node holding the subscription


@pytest.mark.parametrize("unsubscribe", ["channel", "all"])
def test_shard_subscribe_unsubscribe_and_subscribe_again_confirm_in_order(r, p, unsubscribe):
    ch = f"{p}:s"
    with r.pubsub() as ps:
        ps.ssubscribe(ch)
        if unsubscribe == "all":
            ps.sunsubscribe()
        else:
            ps.sunsubscribe(ch)
        ps.ssubscribe(ch)
        assert ps.subscribed
        assert collect(ps.get_sharded_message, 3) == [
            msg("ssubscribe", ch, 1), msg("sunsubscribe", ch, 0), msg("ssubscribe", ch, 1)]
        assert ps.subscribed and list(ps.shard_channels) == [ch]
        assert r.spublish(ch, "x") == 1
        assert collect(ps.get_sharded_message, 1) == [msg("smessage", ch, "x")]  # no confirmation more


def test_pending_unsubscribe_shard_channels_until_the_confirmation_is_read(r, p):
    ch = f"{p}:s"
    with r.pubsub() as ps:
        assert ps.pending_unsubscribe_shard_channels == set()
        ps.ssubscribe(ch)
        assert collect(ps.get_sharded_message, 1) == [msg("ssubscribe", ch, 1)]
        ps.sunsubscribe(ch)
        assert ps.pending_unsubscribe_shard_channels == {ch}
        assert collect(ps.get_sharded_message, 1) == [msg("sunsubscribe", ch, 0)]
        assert ps.pending_unsubscribe_shard_channels == set()


def test_a_shard_channel_handler_may_ssubscribe_from_inside_it(r, p):
    first, second = f"{{{p}}}:a", f"{{{p}}}:b"  # one slot, so one connection and counts 1, 2
    ps = r.pubsub()
    calls: list[Any] = []

    def handler(message: dict[str, Any]) -> None:
        calls.append(message["data"])
        if len(calls) == 1:
            ps.ssubscribe(second)

    try:
        ps.ssubscribe(**{first: handler})
        assert collect(ps.get_sharded_message, 1) == [msg("ssubscribe", first, 1)]
        assert r.spublish(first, "go") == 1
        returned = []
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            returned.append(ps.get_sharded_message(timeout=0.2))
        assert calls == ["go"] and set(returned) == {None}  # the call that ran the handler returns None
        assert collect(ps.get_sharded_message, 1) == [msg("ssubscribe", second, 2)]  # to the next call
        assert r.spublish(second, "hi") == 1
        assert collect(ps.get_sharded_message, 1) == [msg("smessage", second, "hi")]
    finally:
        ps.close()


def test_shard_subscribe_and_unsubscribe_counts(r, p, cluster):
    first, second = cluster.primaries()[:2]
    a, b, c = on_nodes(cluster, p, [first, second, first])
    ps = r.pubsub()
    try:
        ps.ssubscribe(a, b, c)
        got = collect(ps.get_sharded_message, 3)
        assert sorted(got, key=lambda m: m["channel"]) == sorted(
            [msg("ssubscribe", a, 1), msg("ssubscribe", b, 1), msg("ssubscribe", c, 2)], key=lambda m: m["channel"])
        assert r.spublish(c, "x") == 1
        assert collect(ps.get_sharded_message, 1) == [msg("smessage", c, "x")]
        ps.sunsubscribe(a)
        assert collect(ps.get_sharded_message, 1) == [msg("sunsubscribe", a, 1)]
        ps.sunsubscribe()
        got = collect(ps.get_sharded_message, 2)
        assert sorted(got, key=lambda m: m["channel"]) == sorted(
            [msg("sunsubscribe", b, 0), msg("sunsubscribe", c, 0)], key=lambda m: m["channel"])
        assert r.spublish(c, "gone") == 0
        assert ps.shard_channels == {}
    finally:
        ps.close()


def test_sharded_message_from_one_node(r, p, cluster):
    first, second = cluster.primaries()[:2]
    a, b = on_nodes(cluster, p, [first, second])
    ps = r.pubsub(ignore_subscribe_messages=True)
    try:
        ps.ssubscribe(a, b)
        r.spublish(b, "to-b")
        r.spublish(a, "to-a")
        node = ClusterNode(cluster.host, first)
        poll(lambda: ps.get_sharded_message(timeout=0.2, target_node=node) == msg("smessage", a, "to-a"),
             timeout=10, what="message from the first node")
        assert collect(ps.get_sharded_message, 1) == [msg("smessage", b, "to-b")]
    finally:
        ps.close()


# ---------------------------------------------------------------- where we differ on purpose (README table)


def test_differences_in_pipelines(r, p):
    """Blocked multi-key methods and multi-key DEL run when their keys share a slot; queue calls chain."""
    t = f"{{{p}}}"
    pipe = r.pipeline()
    if isinstance(r, RedisCluster):
        raises(rx.RedisClusterException, pipe.mget, f"{t}:a", f"{t}:b")
        raises(rx.RedisClusterException, pipe.delete, f"{t}:a", f"{t}:b")
        assert pipe.set(f"{t}:a", 1) is pipe and pipe.delete(f"{t}:a") is None
    else:
        pipe.mset({f"{t}:a": 1, f"{t}:b": 2}).mget(f"{t}:a", f"{t}:b").delete(f"{t}:a", f"{t}:b")
        assert pipe.execute() == [True, ["1", "2"], 2]


def test_differences_in_pipelines_del_across_slots(r, p):
    """A DEL/UNLINK queued with execute_command whose keys span slots: RedisCluster refuses it at
    execute; clusterpool splits it per slot and sums the counts, as its plain client does."""
    a, b = two_slots(p)
    r.set(a, 1)
    r.set(b, 2)
    pipe = r.pipeline()
    pipe.execute_command("DEL", a, b)
    if isinstance(r, RedisCluster):
        raises(rx.RedisClusterException, pipe.execute)
        r.delete(a, b)
    else:
        assert pipe.execute() == [2]
    assert r.exists(a, b) == 0


def test_differences_in_pubsub(r, p):
    """clusterpool's get_message also returns shard-channel messages; RedisCluster's reads only the
    classic connection (and raises RuntimeError when there is none)."""
    ch = f"{p}:s"
    ps = r.pubsub()
    try:
        ps.ssubscribe(ch)
        assert collect(ps.get_sharded_message, 1) == [msg("ssubscribe", ch, 1)]
        assert r.spublish(ch, "x") == 1
        if isinstance(r, RedisCluster):
            raises(RuntimeError, ps.get_message, timeout=0.2)
        else:
            assert collect(ps.get_message, 1) == [msg("smessage", ch, "x")]
    finally:
        ps.close()


def test_pubsub_raw_execute_command(r, p):
    ch = f"{p}:raw"
    ps = r.pubsub()
    try:
        ps.execute_command("SUBSCRIBE", ch)  # placed on ch's slot owner, as subscribe() would be
        poll(lambda: r.publish(ch, "x") == 1, timeout=10, what="raw SUBSCRIBE applied")
    finally:
        ps.close()


def test_reinitialize_shard_subscriptions_keeps_current_ones(r, p):
    ch = f"{p}:s"
    ps = r.pubsub(ignore_subscribe_messages=True)
    try:
        ps.ssubscribe(ch)
        poll(lambda: ps.get_sharded_message(timeout=0.1) is None and r.spublish(ch, "x") == 1, what="subscribed")
        ps.reinitialize_shard_subscriptions()  # nothing moved: nothing changes
        assert list(ps.shard_channels) == [ch]
        assert r.spublish(ch, "y") == 1
        got = collect(ps.get_sharded_message, 2)
        assert [m["data"] for m in got] == ["x", "y"]
    finally:
        ps.close()
