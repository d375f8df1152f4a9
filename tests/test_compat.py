"""Drop-in compatibility: the same scenarios on redis-py's RedisCluster and on ClusterClient.

Every test taking `client` runs once per client (see tests/compat.py) and
asserts what RedisCluster code relies on: replies, their shapes, and the
exception classes. Tests taking `both` compare the two clients' replies where
they depend on the cluster's state. Only the session cluster is used, and
nothing here changes its shape (destructive cluster commands are checked
through their error paths).
"""

from __future__ import annotations

import threading
import uuid
import warnings

import pytest
import redis
from redis.exceptions import LockError, LockNotOwnedError, RedisClusterException, RedisError, ResponseError
from redis.lock import Lock
from redis.retry import Retry
from redis.backoff import NoBackoff

import compat
from compat import CLUSTER_CLIENT, make_client, same_outcome, spread
from waiting import poll

client_kind, client, both, key = compat.client_kind, compat.client, compat.both, compat.key  # the fixtures

# ---------------------------------------------------------------- node API


def test_get_nodes_lists_every_node_with_its_role(client, cluster):
    got = {(n.name, n.server_type) for n in client.get_nodes()}
    assert got == {(f"{cluster.host}:{p}", cluster.role(p)) for p in cluster.ports}


def test_get_primaries_and_get_replicas(client, cluster):
    assert {n.name for n in client.get_primaries()} == {f"{cluster.host}:{p}" for p in cluster.primaries()}
    assert {n.name for n in client.get_replicas()} == {f"{cluster.host}:{p}" for p in cluster.replicas()}


def test_node_objects_carry_host_port_name_server_type(client, cluster):
    port = cluster.primaries()[0]
    node = client.get_node(cluster.host, port)
    assert (node.host, node.port, node.name, node.server_type) == (cluster.host, port, f"{cluster.host}:{port}", "primary")


def test_get_node_by_name(client, cluster):
    name = f"{cluster.host}:{cluster.replicas()[0]}"
    assert client.get_node(node_name=name).name == name


def test_get_node_unknown_is_none(client, cluster):
    assert client.get_node(cluster.host, 1) is None
    assert client.get_node() is None


def test_get_node_from_key_is_the_slot_primary(client, cluster):
    node = client.get_node_from_key("foo")
    assert node.port == cluster.slot_owner(12182)
    assert node.server_type == "primary"


def test_get_node_from_key_replica(client, cluster):
    node = client.get_node_from_key("foo", replica=True)
    assert node.port in cluster.replicas_of(cluster.slot_owner(12182))
    assert node.server_type == "replica"


def test_get_random_node_is_a_known_node(client):
    assert client.get_random_node() in client.get_nodes()


def test_get_default_node_is_a_primary(client):
    assert client.get_default_node() in client.get_primaries()


def test_set_default_node_changes_where_keyless_commands_go(client, cluster):
    node = client.get_primaries()[-1]
    assert client.set_default_node(node) is True
    assert client.get_default_node() == node
    assert client.client_info()["laddr"] == node.name  # CLIENT INFO goes to the default node


def test_set_default_node_none_is_refused(client):
    before = client.get_default_node()
    assert client.set_default_node(None) is False
    assert client.get_default_node() == before


def test_replace_default_node_with_a_given_node(client):
    node = client.get_primaries()[1]
    client.replace_default_node(node)
    assert client.get_default_node() == node


def test_replace_default_node_without_a_target_picks_another_primary(client):
    """redis-py's test_replace_cluster_node: another node, then back to the first one."""
    before = client.get_default_node()
    client.replace_default_node()
    assert client.get_default_node() != before
    assert client.get_default_node() in client.get_primaries()
    client.replace_default_node(before)
    assert client.get_default_node() == before


def test_get_random_primary_node_is_a_primary(client):
    assert client.get_random_primary_node() in client.get_primaries()


def test_get_nodes_from_slot(client, cluster):
    assert [n.port for n in client.get_nodes_from_slot("GET", "GET", "foo")] == [cluster.slot_owner(12182)]


def test_redis_connection_is_a_redis_bound_to_the_node(client, cluster, key):
    node = client.get_node_from_key(key)
    client.set(key + "a", "v")
    r = client.get_redis_connection(node)
    assert isinstance(r, redis.Redis)
    assert r.get(key + "a") == b"v"
    assert node.redis_connection.get(key + "a") == b"v"


def test_target_nodes_takes_a_node_object(client, cluster):
    port = cluster.primaries()[1]
    node = client.get_node(cluster.host, port)
    assert client.cluster_myid(node) == cluster.node_id(port).encode()


def test_target_nodes_takes_a_list_of_nodes(client):
    assert client.ping(target_nodes=client.get_primaries()) is True


def test_target_nodes_takes_a_dict_of_nodes(client):
    nodes = {n.name: n for n in client.get_primaries()}
    assert set(client.cluster_myid(nodes)) == set(nodes)


def test_target_nodes_flag_all_gives_a_reply_per_node(client, cluster):
    got = client.cluster_info(target_nodes="all")
    assert set(got) == {f"{cluster.host}:{p}" for p in cluster.ports}
    assert all(v["cluster_state"] == "ok" for v in got.values())


def test_target_nodes_of_a_wrong_type_is_a_type_error(client):
    with pytest.raises(TypeError):
        client.cluster_info(target_nodes=3.5)


def test_monitor_on_a_node_sees_its_commands(client, cluster, key):
    node = client.get_node_from_key(key)
    with client.monitor(target_node=node) as m:
        client.get(key + "watched")
        for _ in range(20):  # other tests' commands may come first
            cmd = m.next_command()
            if (key + "watched") in cmd["command"]:
                break
        else:
            pytest.fail("MONITOR never showed the GET")


def test_keyslot_is_computed_locally(client):
    assert client.keyslot("foo") == 12182
    assert client.keyslot(b"{user}:1") == client.keyslot("{user}:2")


def test_determine_slot(client):
    assert client.determine_slot("GET", "foo") == 12182
    assert client.determine_slot("MSET", "{a}1", 1, "{a}2", 2) == client.keyslot("a")


def test_determine_slot_cross_slot(client):
    with pytest.raises(RedisClusterException):
        client.determine_slot("MSET", "a", 1, "b", 2)


def test_determine_slot_without_key(client):
    with pytest.raises(RedisClusterException, match="Missing key"):
        client.determine_slot("GET")


def test_get_encoder_encodes_like_the_connections(client):
    enc = client.get_encoder()
    assert enc.encode("x") == b"x"
    assert enc.encode(5) == b"5"
    assert enc.decode_responses is False


def test_get_connection_kwargs_is_a_dict(client):
    assert isinstance(client.get_connection_kwargs(), dict)


def test_set_response_callback_applies_after_the_standard_parser(client_kind, cluster, key):
    c = make_client(client_kind, cluster)
    try:
        c.set(key + "cb", "v")
        c.set_response_callback("GET", lambda r, **kw: b"wrapped:" + r)
        assert c.get(key + "cb") == b"wrapped:v"
        c.set_response_callback("EXISTS", lambda r, **kw: r * 10)
        assert c.exists(key + "cb") == 10
    finally:
        c.close()


def test_set_retry(client):
    retry = Retry(NoBackoff(), 2)
    client.set_retry(retry)
    assert client.retry is retry


def test_load_external_module(client):
    def helper():
        return "module"

    client.load_external_module("mymodule", helper)
    assert client.mymodule() == "module"


def test_disconnect_connection_pools_then_commands_still_work(client, key):
    client.set(key + "d", 1)
    client.disconnect_connection_pools()
    assert client.get(key + "d") == b"1"


def test_keyspace_notifications_object_over_the_primaries(client):
    ksn = client.keyspace_notifications()
    try:
        assert ksn is not None
    finally:
        ksn.close()


def test_get_random_primary_or_all_nodes_is_a_primary_without_replica_reads(client):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # redis-py 8.2 deprecates the name
        assert client.get_random_primary_or_all_nodes("GET") in client.get_primaries()


def test_keyless_target_node_is_a_primary_without_replica_reads_and_any_node_with_them(client):
    if not hasattr(client, "get_keyless_target_node"):
        pytest.skip("RedisCluster has get_keyless_target_node from redis-py 8.2 on")
    assert client.get_keyless_target_node("GET") in client.get_primaries()
    client.read_from_replicas = True
    try:
        picks = {client.get_keyless_target_node("GET").name for _ in range(200)}
        assert picks == {n.name for n in client.get_nodes()}
        assert client.get_keyless_target_node("SET") in client.get_primaries()
    finally:
        client.read_from_replicas = False


def test_from_url_and_context_manager(client_kind, cluster):
    compat.settle(cluster)
    with compat.client_class(client_kind).from_url(cluster.url) as c:
        assert c.ping() is True


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_client_tracking_on_and_off_answer_per_node(both):
    rc, cp = both
    same_outcome(rc.client_tracking_on, cp.client_tracking_on)
    same_outcome(rc.client_tracking_off, cp.client_tracking_off)


@pytest.mark.parametrize("method", ["hotkeys_stop", "hotkeys_reset", "hotkeys_get"])
def test_hotkeys_are_refused_in_cluster_mode(client, method):
    with pytest.raises(NotImplementedError):
        getattr(client, method)()


# ---------------------------------------------------------------- locks and scripts


def test_lock_acquire_release(client, key):
    lock = client.lock(key + "lock", timeout=10)
    assert isinstance(lock, Lock)
    assert lock.acquire(blocking=False) is True
    assert lock.locked() and lock.owned()
    lock.release()
    assert not lock.locked()


def test_lock_held_elsewhere_is_not_acquired(client, key):
    first = client.lock(key + "lock", timeout=10)
    second = client.lock(key + "lock", timeout=10)
    assert first.acquire()
    try:
        assert second.acquire(blocking=False) is False
        assert second.acquire(blocking_timeout=0.05) is False
        assert not second.owned()
    finally:
        first.release()


def test_lock_extend_and_reacquire(client, key):
    lock = client.lock(key + "lock", timeout=5)
    with lock:
        assert lock.extend(100) is True
        assert client.pttl(key + "lock") > 5000
        assert lock.reacquire() is True
        assert client.pttl(key + "lock") <= 5000


def test_lock_release_when_not_owned(client, key):
    lock = client.lock(key + "lock", timeout=10)
    lock.acquire()
    client.delete(key + "lock")
    with pytest.raises(LockNotOwnedError):
        lock.release()


def test_lock_release_when_never_acquired(client, key):
    with pytest.raises(LockError):
        client.lock(key + "lock").release()


def test_lock_token_is_thread_local(client, key):
    lock = client.lock(key + "lock", timeout=10)
    lock.acquire()
    errors: list[BaseException] = []

    def other_thread():
        try:
            lock.release()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert len(errors) == 1  # redis-py's Lock: the other thread has no token (AttributeError)
    assert lock.owned()
    lock.release()


def test_lock_class(client, key):
    class MyLock(Lock):
        pass

    lock = client.lock(key + "lock", lock_class=MyLock)
    assert type(lock) is MyLock


def test_register_script_runs_and_reloads_after_script_flush(client, key):
    script = client.register_script("return redis.call('GET', KEYS[1])")
    client.set(key + "s", "v")
    assert script(keys=[key + "s"]) == b"v"
    client.script_flush()
    assert script(keys=[key + "s"]) == b"v"


def test_script_load_and_exists(client):
    sha = client.script_load("return 7")
    assert client.script_exists(sha, "0" * 40) == [True, False]
    assert client.evalsha(sha, 0) == 7


# ---------------------------------------------------------------- cluster commands


def test_cluster_info(client):
    info = client.cluster_info()
    assert info["cluster_state"] == "ok"
    assert info["cluster_slots_assigned"] == "16384"


def test_cluster_nodes(both):
    rc, cp = both
    want, got = rc.cluster_nodes(), cp.cluster_nodes()
    assert set(got) == set(want)
    assert {k: v["node_id"] for k, v in got.items()} == {k: v["node_id"] for k, v in want.items()}


def test_cluster_slots(both):
    rc, cp = both
    assert cp.cluster_slots() == rc.cluster_slots()


def test_cluster_shards(both):
    rc, cp = both

    def shape(shards):
        return sorted((tuple(s["slots"]), tuple(sorted(n.get(b"id") or n.get("id") for n in s["nodes"])))
                      for s in shards)

    assert shape(cp.cluster_shards()) == shape(rc.cluster_shards())


def test_cluster_myid(client, cluster):
    port = cluster.replicas()[0]
    assert client.cluster_myid(client.get_node(cluster.host, port)) == cluster.node_id(port).encode()


def test_cluster_myshardid(both):
    rc, cp = both
    same_outcome(rc.cluster_myshardid, cp.cluster_myshardid)


def test_cluster_keyslot_asks_the_server(client):
    assert client.cluster_keyslot("foo") == 12182


def test_cluster_countkeysinslot_goes_to_the_slots_owner(client, key):
    slot = client.keyslot(key)
    before = client.cluster_countkeysinslot(slot)  # other tests' keys may share the slot
    client.set(key + "1", 1)
    client.set(key + "2", 2)
    assert client.cluster_countkeysinslot(slot) == before + 2


def test_cluster_get_keys_in_slot(client, key):
    slot = client.keyslot(key)
    client.set(key + "1", 1)
    assert key + "1" in client.cluster_get_keys_in_slot(slot, 1000)  # with other tests' keys of the slot


def test_cluster_links(client, cluster):
    links = client.cluster_links(client.get_primaries()[0])
    assert isinstance(links, list) and links
    assert all(b"direction" in link or "direction" in link for link in links)


def test_cluster_replicas(client, cluster):
    primary = cluster.primaries()[0]
    got = client.cluster_replicas(cluster.node_id(primary))
    assert set(got) == {f"{cluster.host}:{p}" for p in cluster.replicas_of(primary)}


def test_cluster_count_failure_report(client, cluster):
    assert client.cluster_count_failure_report(cluster.node_id(cluster.primaries()[0])) == 0


def test_cluster_save_config(client):
    assert client.cluster_save_config(target_nodes=client.get_primaries()[0]) is True


def test_cluster_meet_a_known_node(client, cluster):
    assert client.cluster_meet(cluster.host, cluster.primaries()[1]) is True


def test_cluster_failover_bad_option(client):
    with pytest.raises(RedisError):
        client.cluster_failover(client.get_primaries()[0], "sideways")


def test_cluster_failover_on_a_primary_is_refused_by_the_server(client):
    with pytest.raises(ResponseError):
        client.cluster_failover(client.get_primaries()[0])


def test_cluster_setslot_bad_state(client, cluster):
    with pytest.raises(RedisError):
        client.cluster_setslot(client.get_primaries()[0], cluster.node_id(cluster.primaries()[0]), 1, "bogus")
    with pytest.raises(RedisError):
        client.cluster_setslot(client.get_primaries()[0], cluster.node_id(cluster.primaries()[0]), 1, "stable")


def test_cluster_setslot_stable_goes_to_the_slots_owner(client):
    assert client.cluster_setslot_stable(12182) is True


def test_cluster_addslots_of_a_busy_slot(client):
    with pytest.raises(ResponseError):
        client.cluster_addslots(client.get_primaries()[0], 12182)


def test_cluster_set_config_epoch_when_set(client):
    with pytest.raises(ResponseError):
        client.cluster_set_config_epoch(1)


def test_cluster_replicate_unknown_node(client):
    with pytest.raises(ResponseError):
        client.cluster_replicate(client.get_replicas()[0], "0" * 40)


def test_cluster_reset_of_a_primary_with_keys_is_refused(client, key):
    client.set(key + "k", 1)
    node = client.get_node_from_key(key)
    with pytest.raises(ResponseError):
        client.cluster_reset(target_nodes=node)


@pytest.mark.parametrize("method", ["cluster_flushslots", "cluster_bumpepoch"])
def test_refused_cluster_commands(client, method):
    with pytest.raises(NotImplementedError):
        getattr(client, method)()


@pytest.mark.parametrize("method,args", [("slaveof", ()), ("replicaof", ()), ("swapdb", (0, 1))])
def test_refused_replication_commands(client, method, args):
    with pytest.raises(RedisClusterException):
        getattr(client, method)(*args)


# ---------------------------------------------------------------- routing and errors


def test_cross_slot_mset(client):
    with pytest.raises(RedisClusterException):
        client.mset({"a": 1, "b": 2})


def test_cross_slot_eval(client):
    with pytest.raises(RedisClusterException):
        client.eval("return 1", 2, "a", "b")


@pytest.mark.parametrize("call", [
    lambda c: c.copy("a", "b"),
    lambda c: c.rename("a", "b"),
    lambda c: c.sinterstore("a", ["b", "c"]),
    lambda c: c.bitop("AND", "d", "a", "b"),
], ids=["copy", "rename", "sinterstore", "bitop"])
def test_cross_slot_commands(client, call):
    with pytest.raises(RedisClusterException):
        call(client)


def test_get_without_key_is_refused_before_sending(client):
    with pytest.raises(RedisClusterException, match="No way to dispatch this command to Redis Cluster. Missing key."):
        client.execute_command("GET")


def test_split_multi_key_commands_sum_over_slots(client, key):
    keys = [f"{spread(key)}split:{i}" for i in range(6)]
    for k in keys:
        client.set(k, 1)
    assert client.exists(*keys) == 6
    assert client.touch(*keys) == 6
    assert client.unlink(*keys[:3]) == 3
    assert client.delete(*keys) == 3


def test_mset_mget_nonatomic(client, key):
    mapping = {f"{spread(key)}nonatomic:{i}": str(i) for i in range(5)}
    assert client.mset_nonatomic(mapping) == [True] * 5
    assert client.mget_nonatomic(list(mapping)) == [v.encode() for v in mapping.values()]


def test_scan_iter_sees_keys_of_every_primary(client, key):
    keys = {f"{spread(key)}scan:{i}" for i in range(10)}
    for k in keys:
        client.set(k, 1)
    assert {k.decode() for k in client.scan_iter(match=f"{spread(key)}scan:*")} == keys


def test_scan_returns_a_cursor_per_primary(client, cluster):
    cursors, _ = client.scan(0, count=10)
    assert set(cursors) == {f"{cluster.host}:{p}" for p in cluster.primaries()}


def test_ping(client):
    assert client.ping() is True


@pytest.mark.parametrize("method,args,kind", [
    ("latency_latest", (), list),
    ("latency_history", ("command",), list),
    ("pubsub_numpat", (), int),
    ("pubsub_channels", (), list),
    ("pubsub_shardchannels", (), list),
    ("time", (), tuple),
    ("lastsave", (), object),
    ("slowlog_len", (), int),
    ("slowlog_get", (), list),
    ("client_list", (), list),
    ("client_id", (), int),
    ("command_count", (), int),
    ("memory_stats", (), dict),
    ("config_get", ("maxmemory",), dict),
    ("randomkey", (), object),
    ("acl_whoami", (), object),
    ("module_list", (), list),
])
def test_keyless_command_reply_shape(client, method, args, kind):
    assert isinstance(getattr(client, method)(*args), kind)


def test_pubsub_numsub_sums_counts_per_channel(both, key):
    rc, cp = both
    same_outcome(rc.pubsub_numsub, cp.pubsub_numsub, key + "ch", key + "ch2")
    same_outcome(rc.pubsub_shardnumsub, cp.pubsub_shardnumsub, key + "ch")


def test_publish_without_subscribers(client, key):
    assert client.publish(key + "ch", "x") == 0
    assert client.spublish(key + "ch", "x") == 0


def test_primaries_commands_answer_per_primary(client, cluster):
    """FUNCTION FLUSH goes to every primary like FLUSHALL (which would wipe other tests' keys)."""
    got = client.function_flush()
    assert set(got) == {f"{cluster.host}:{p}" for p in cluster.primaries()}
    assert all(v is True for v in got.values())


def test_script_flush_and_config_set_answer_true(client):
    assert client.script_flush() is True
    assert client.config_set("slowlog-max-len", 128) is True
    assert client.slowlog_reset() is True


def test_client_unpause_is_true(client):
    assert client.client_unpause() is True


def test_stralgo_is_refused(client):
    with pytest.raises(RedisError):
        client.stralgo("LCS", "abc", "abd")


# ---------------------------------------------------------------- connection state


def test_readonly_to_replicas_turns_replica_reads_on_and_readwrite_off(client_kind, cluster, key):
    c = make_client(client_kind, cluster)
    try:
        c.set(key + "r", "v")
        assert c.read_from_replicas is False
        assert c.readonly(target_nodes="replicas") == {n.name: True for n in c.get_replicas()}
        assert c.read_from_replicas is True
        assert c.get(key + "r") in (b"v", None)  # a replica may lag
        assert c.readwrite() is True
        assert c.read_from_replicas is False
        assert c.get(key + "r") == b"v"
    finally:
        c.close()


def test_readonly_without_targets_keeps_reads_on_primaries(client_kind, cluster):
    c = make_client(client_kind, cluster)
    try:
        assert c.readonly() is True
        assert c.read_from_replicas is False
    finally:
        c.close()


def test_client_setname_then_getname_and_client_list(client_kind, cluster):
    c = make_client(client_kind, cluster)
    name = f"compat-{client_kind}"
    try:
        assert c.client_setname(name) is True
        assert c.client_getname() == name
        assert name in {entry["name"] for entry in c.client_list()}
    finally:
        c.close()


def test_client_setname_with_a_space_is_refused_by_the_server(client):
    with pytest.raises(ResponseError):
        client.client_setname("two words")


def _server_version(cluster) -> tuple[int, ...]:
    r = cluster.client(cluster.primaries()[0])
    try:
        return tuple(int(x) for x in r.info("server")["redis_version"].split(".")[:2])
    finally:
        r.close()


def test_client_setinfo_lib_name(client_kind, cluster):
    c = make_client(client_kind, cluster)
    try:
        if _server_version(cluster) < (7, 2):  # no CLIENT SETINFO before 7.2: the server's error
            with pytest.raises(ResponseError):
                c.client_setinfo("LIB-NAME", "compatlib")
            return
        assert c.client_setinfo("LIB-NAME", "compatlib") is True
        assert c.client_info()["lib-name"] == "compatlib"
    finally:
        c.close()


def _clients_of(cluster, port: int) -> list[dict]:
    """Node `port`'s CLIENT LIST, read by a plain redis.Redis (not a client under test)."""
    r = cluster.client(port)
    try:
        return r.client_list()
    finally:
        r.close()


def _named(cluster, port: int, *names: str) -> list[str]:
    return [c["name"] for c in _clients_of(cluster, port) if c.get("name") in names]


def test_client_setname_on_all_nodes_leaves_a_named_connection_another_client_can_kill(client_kind, cluster):
    """redis-py's test_client_kill: two clients name themselves on every node before using it;
    a primary lists both once, and killing one by its address leaves the other."""
    one, two = f"cp-one-{uuid.uuid4().hex[:8]}", f"cp-two-{uuid.uuid4().hex[:8]}"
    with make_client(client_kind, cluster) as a, make_client(client_kind, cluster) as b:
        node = a.get_primaries()[0]
        assert a.client_setname(one, target_nodes="all") is True
        assert b.client_setname(two, target_nodes="all") is True
        listed = [c for c in a.client_list(target_nodes=node) if c.get("name") in (one, two)]
        assert sorted(c["name"] for c in listed) == [one, two]
        addr = next(c["addr"] for c in listed if c["name"] == two)
        assert a.client_kill(addr, target_nodes=node) is True
        assert [c["name"] for c in a.client_list(target_nodes=node) if c.get("name") in (one, two)] == [one]


def test_client_setname_on_all_nodes_is_in_every_nodes_client_list(client_kind, cluster):
    name = f"cp-all-{uuid.uuid4().hex[:8]}"
    with make_client(client_kind, cluster) as c:
        assert c.client_setname(name, target_nodes="all") is True
        for port in cluster.ports:
            assert _named(cluster, port, name), port


def test_client_setname_without_targets_is_in_the_default_nodes_client_list(client_kind, cluster):
    name = f"cp-default-{uuid.uuid4().hex[:8]}"
    with make_client(client_kind, cluster) as c:
        assert c.client_setname(name) is True
        assert _named(cluster, c.get_default_node().port, name)


def test_client_setinfo_on_all_nodes_is_in_every_nodes_client_list(client_kind, cluster):
    lib = f"cplib{uuid.uuid4().hex[:8]}"
    with make_client(client_kind, cluster) as c:
        if _server_version(cluster) < (7, 2):  # no CLIENT SETINFO before 7.2: the server's error
            with pytest.raises(ResponseError):
                c.client_setinfo("LIB-NAME", lib, target_nodes="all")
            return
        assert c.client_setinfo("LIB-NAME", lib, target_nodes="all")
        for port in cluster.ports:
            assert any(e.get("lib-name") == lib for e in _clients_of(cluster, port)), port


def _no_bgsave(c) -> bool:
    return int(c.info("persistence").get("rdb_bgsave_in_progress", 0)) == 0


def test_info_without_targets_is_the_default_nodes_one_dict(client):
    assert client.info("server")["tcp_port"] == client.get_default_node().port


def test_bgsave_then_bgsave_schedule_on_the_default_node(client):
    """redis-py's test_bgsave (test_commands.py): each BGSAVE (BGSAVE SCHEDULE both times, on the
    default node) waits on info("persistence") until the previous one has finished."""
    poll(lambda: _no_bgsave(client), what="no BGSAVE in progress")
    assert client.bgsave()
    poll(lambda: _no_bgsave(client), what="the first BGSAVE to finish")
    assert client.bgsave(True)
    poll(lambda: _no_bgsave(client), what="the second BGSAVE to finish")


# ---------------------------------------------------------------- ClusterClient only: names on every node


def test_client_setname_names_every_pooled_and_future_connection(cluster):
    c = make_client(CLUSTER_CLIENT, cluster)
    try:
        for k in ("a", "b", "c", "d"):
            c.get(k)  # connections to several primaries
        c.client_setname("compat-everywhere")
        for node in c.get_primaries():
            names = {e["name"] for e in c.client_list(target_nodes=node)}
            assert "compat-everywhere" in names
    finally:
        c.close()


def test_client_setname_on_target_nodes_only(cluster):
    c = make_client(CLUSTER_CLIENT, cluster)
    try:
        first, second = c.get_primaries()[:2]
        c.client_setname("compat-first", target_nodes=first)
        assert c.client_getname(target_nodes=first) == "compat-first"
        assert c.client_getname(target_nodes=second) is None
    finally:
        c.close()


def test_cross_slot_is_also_our_cross_slot_error(cluster):
    from clusterpool import CrossSlotError

    c = make_client(CLUSTER_CLIENT, cluster)
    try:
        with pytest.raises(CrossSlotError):
            c.mset({"a": 1, "b": 2})
    finally:
        c.close()


def test_missing_key_is_refused_before_anything_is_sent(cluster):
    sent: list[str] = []
    c = make_client(CLUSTER_CLIENT, cluster, command_hook=lambda node, cmd, secs, err: sent.append(cmd))
    try:
        c.connect()
        with pytest.raises(RedisClusterException):
            c.execute_command("GET")
        assert sent == []
    finally:
        c.close()


def test_readonly_sends_reads_to_replicas_and_readwrite_back(cluster):
    c = make_client(CLUSTER_CLIENT, cluster)
    try:
        c.readonly(target_nodes="replicas")
        assert c.node_for("foo", read=True).role == "replica"
        c.readwrite()
        assert c.node_for("foo", read=True).role == "primary"
    finally:
        c.close()


def test_node_handles_equal_redis_py_cluster_nodes(cluster):
    from redis.cluster import ClusterNode

    c = make_client(CLUSTER_CLIENT, cluster)
    try:
        port = cluster.primaries()[0]
        handle = c.get_node(cluster.host, port)
        assert handle == ClusterNode(cluster.host, port, "primary")
        assert c.cluster_myid(ClusterNode(cluster.host, port)) == cluster.node_id(port).encode()
    finally:
        c.close()


def test_unknown_target_node_is_refused(cluster):
    from clusterpool import ConfigurationError

    c = make_client(CLUSTER_CLIENT, cluster)
    try:
        with pytest.raises(ConfigurationError):
            c.cluster_info(target_nodes=f"{cluster.host}:1")
    finally:
        c.close()


# ---------------------------------------------------------------- slot assignment (a private cluster)


@pytest.mark.slow
def test_slot_assignment_commands_on_both_clients(fresh_cluster):
    """DELSLOTS/ADDSLOTS (and their RANGE forms), SETSLOT MIGRATING/STABLE and a replica's
    CLUSTER RESET, each client on its own slots and replica; replies as RedisCluster's."""
    kinds = (compat.REDIS_CLUSTER, CLUSTER_CLIENT)
    for kind, slot in zip(kinds, (100, 200)):
        c = make_client(kind, fresh_cluster)
        try:
            port = fresh_cluster.slot_owner(slot)
            node = c.get_node(fresh_cluster.host, port)
            assert c.cluster_delslots(slot) == [True], kind
            assert c.cluster_addslots(node, slot) is True, kind
            assert c.cluster_delslotsrange(slot + 1, slot + 2) is True, kind
            assert c.cluster_addslotsrange(node, slot + 1, slot + 2) is True, kind
            other = next(p for p in fresh_cluster.primaries() if p != port)
            assert c.cluster_setslot(node, fresh_cluster.node_id(other), slot, "MIGRATING") is True, kind
            assert c.cluster_setslot_stable(slot) is True, kind
            fresh_cluster.wait_ok()
        finally:
            c.close()
    # last: a reset replica leaves the cluster
    for kind, replica in zip(kinds, fresh_cluster.replicas()):
        c = make_client(kind, fresh_cluster)
        try:
            assert c.cluster_reset(soft=True, target_nodes=c.get_node(fresh_cluster.host, replica)) is True, kind
        finally:
            c.close()
