"""Core router against a real cluster: results match plain redis.Redis, keyless commands,
options, bad input, lifecycle and concurrency."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import uuid

import pytest
import redis
from redis import exceptions as rx

import clusterpool
from clusterpool import ClusterClient
from waiting import poll


# ---------------------------------------------------------------- helpers


def raw(cluster, port, **kw):
    return redis.Redis(host=cluster.host, port=port, socket_timeout=5, **kw)


def cmdstat_calls(cluster, port, cmd):
    with raw(cluster, port) as r:
        stats = r.info("commandstats")
    return int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def uid():
    return uuid.uuid4().hex[:12]


def key_per_node(cluster, prefix):
    """{primary port: key} with one key owned by every primary."""
    with raw(cluster, cluster.primaries()[0]) as r:
        ranges = [
            (int(row[0]), int(row[1]), int(row[2][1]))
            for row in r.execute_command("CLUSTER", "SLOTS")
        ]
    want = {p for _, _, p in ranges}
    owners = {}
    i = 0
    while len(owners) < len(want):
        k = f"{prefix}:{i}"
        slot = clusterpool.key_slot(k.encode())
        owners.setdefault(next(p for s, e, p in ranges if s <= slot <= e), k)
        i += 1
    return owners


@pytest.fixture
def client(cluster):
    c = ClusterClient(startup_nodes=cluster.startup_nodes)
    yield c
    c.close()


@pytest.fixture
def tag():
    return f"{{t{uid()}}}"


@pytest.fixture
def pair(cluster, client, tag):
    """(clusterpool client, plain redis.Redis on the node that owns `tag`, tag)."""
    port = cluster.slot_owner(clusterpool.key_slot(tag.encode()))
    r = raw(cluster, port)
    yield client, r, tag
    r.close()


def same(pair, fn):
    """fn(conn, prefix) through the cluster client and through plain redis.Redis; equal results."""
    client, r, tag = pair
    got = _strip(fn(client, f"{tag}cp:"), f"{tag}cp:")
    want = _strip(fn(r, f"{tag}raw:"), f"{tag}raw:")
    assert got == want, (got, want)
    return got


def _strip(v, prefix):
    """Replace the key prefix in replies (key names echoed back) so both sides compare."""
    if isinstance(v, bytes):
        return v.replace(prefix.encode(), b"P:")
    if isinstance(v, str):
        return v.replace(prefix, "P:")
    if isinstance(v, (list, tuple)):
        return type(v)(_strip(x, prefix) for x in v)
    if isinstance(v, dict):
        return {_strip(k, prefix): _strip(x, prefix) for k, x in v.items()}
    return v


# ---------------------------------------------------------------- data types


@pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
def test_strings_match_plain_redis(pair):
    def ops(c, p):
        return [
            c.set(p + "s", "hello"),
            c.get(p + "s"),
            c.append(p + "s", " world"),
            c.getrange(p + "s", 0, 4),
            c.strlen(p + "s"),
            c.incr(p + "n"),
            c.incrby(p + "n", 41),
            c.decr(p + "n"),
            c.incrbyfloat(p + "f", 1.5),
            c.setex(p + "e", 100, "v"),  # deprecated in redis-py, still a command
            c.ttl(p + "e") > 0,
            c.getdel(p + "e"),
            c.get(p + "e"),
            c.setnx(p + "s", "x"),
            c.mset({p + "a": 1, p + "b": 2}),
            c.mget([p + "a", p + "b", p + "missing"]),
            c.getset(p + "a", 5),
            c.set(p + "s", "z", get=True),
        ]

    same(pair, ops)


def test_hashes_match_plain_redis(pair):
    def ops(c, p):
        k = p + "h"
        return [
            c.hset(k, mapping={"a": 1, "b": 2}),
            c.hget(k, "a"),
            c.hgetall(k),
            c.hincrby(k, "a", 10),
            c.hincrbyfloat(k, "c", 0.5),
            sorted(c.hkeys(k)),
            c.hlen(k),
            c.hexists(k, "b"),
            c.hdel(k, "b"),
            c.hmget(k, ["a", "b", "c"]),
            c.hsetnx(k, "a", 0),
        ]

    same(pair, ops)


def test_lists_match_plain_redis(pair):
    def ops(c, p):
        k = p + "l"
        return [
            c.rpush(k, 1, 2, 3),
            c.lpush(k, 0),
            c.lrange(k, 0, -1),
            c.lindex(k, 1),
            c.llen(k),
            c.lset(k, 0, "zero"),
            c.lpop(k),
            c.rpop(k),
            c.lrem(k, 0, 1),
            c.linsert(k, "before", "2", "x"),
            c.lrange(k, 0, -1),
            c.blpop([k], timeout=1),
            c.brpop([k], timeout=1),
            c.lmove(k, p + "l2") if c.rpush(k, "m") else None,
            c.lrange(p + "l2", 0, -1),
        ]

    same(pair, ops)


def test_sets_match_plain_redis(pair):
    def ops(c, p):
        a, b = p + "a", p + "b"
        return [
            c.sadd(a, 1, 2, 3),
            c.sadd(b, 2, 3, 4),
            c.smembers(a),
            c.sismember(a, 1),
            c.scard(a),
            c.sinter([a, b]),
            c.sunion([a, b]),
            c.sdiff([a, b]),
            c.sinterstore(p + "c", [a, b]),
            c.srem(a, 1),
            c.smove(a, b, 2),
            c.smembers(b),
        ]

    same(pair, ops)


def test_sorted_sets_match_plain_redis(pair):
    def ops(c, p):
        k = p + "z"
        return [
            c.zadd(k, {"a": 1, "b": 2, "c": 3}),
            c.zrange(k, 0, -1, withscores=True),
            c.zscore(k, "b"),
            c.zincrby(k, 5, "a"),
            c.zrank(k, "a"),
            c.zrevrange(k, 0, 1),
            c.zrangebyscore(k, 2, 10),
            c.zcount(k, 0, 3),
            c.zrem(k, "c"),
            c.zunionstore(p + "u", [k, k]),
            c.zrange(p + "u", 0, -1, withscores=True),
            c.zpopmin(k),
        ]

    same(pair, ops)


def test_streams_match_plain_redis(pair):
    def ops(c, p):
        k = p + "x"
        out = [
            c.xadd(k, {"f": "1"}, id="1-1"),
            c.xadd(k, {"f": "2"}, id="2-1"),
            c.xlen(k),
            c.xrange(k),
            c.xread({k: "0-0"}),
            c.xgroup_create(k, "g", id="0"),
            c.xreadgroup("g", "consumer", {k: ">"}, count=1),
            c.xack(k, "g", "1-1"),
        ]
        info = c.xinfo_stream(k)
        out.append(
            {
                f: info[f]
                for f in ("length", "groups", "first-entry", "last-entry", "last-generated-id")
            }
        )
        return out

    same(pair, ops)


def test_hyperloglog_geo_bitmaps_match_plain_redis(pair):
    def ops(c, p):
        g = p + "geo"
        return [
            c.pfadd(p + "hll", "a", "b", "c"),
            c.pfcount(p + "hll"),
            c.geoadd(g, [13.361389, 38.115556, "Palermo", 15.087269, 37.502669, "Catania"]),
            c.geodist(g, "Palermo", "Catania", unit="km"),
            c.geopos(g, "Palermo"),
            c.geosearch(g, longitude=15, latitude=37, radius=200, unit="km", sort="ASC"),
            c.setbit(p + "bits", 7, 1),
            c.getbit(p + "bits", 7),
            c.bitcount(p + "bits"),
            c.bitpos(p + "bits", 1),
        ]

    same(pair, ops)


def test_expiry_and_ttl_match_plain_redis(pair):
    def ops(c, p):
        k = p + "k"
        return [
            c.set(k, 1),
            c.ttl(k),
            c.expire(k, 1000),
            900 < c.ttl(k) <= 1000,
            0 < c.pttl(k) <= 1000000,
            c.persist(k),
            c.ttl(k),
            c.ttl(p + "nope"),
            c.type(k),
        ]

    same(pair, ops)


def test_eval_and_evalsha_with_keys_match_plain_redis(pair):
    script = "redis.call('set', KEYS[1], ARGV[1]); return redis.call('get', KEYS[1])"

    def ops(c, p):
        sha = c.script_load(script)
        return [
            c.eval(script, 1, p + "k", "v1"),
            c.evalsha(sha, 1, p + "k2", "v2"),
            c.get(p + "k2"),
        ]

    same(pair, ops)


def test_sort_matches_plain_redis(pair):
    def ops(c, p):
        c.rpush(p + "l", 3, 1, 2)
        return [c.sort(p + "l"), c.sort(p + "l", desc=True), c.sort(p + "l", start=0, num=2)]

    same(pair, ops)


def test_script_load_then_evalsha_works_on_every_shard(cluster, client):
    sha = client.script_load("return redis.call('incr', KEYS[1])")
    keys = key_per_node(cluster, f"sl{uid()}")
    assert len(keys) == len(cluster.primaries())
    for k in keys.values():
        assert client.evalsha(sha, 1, k) == 1


def test_sort_and_keyed_commands_go_to_the_key_owner(cluster, client):
    keys = key_per_node(cluster, f"own{uid()}")
    for port, k in keys.items():
        client.set(k, port)
        with raw(cluster, port) as r:
            assert r.get(k) == str(port).encode()


# ---------------------------------------------------------------- keyless, cluster-wide


def test_dbsize_is_the_cluster_total(cluster, client):
    for k in key_per_node(cluster, f"db{uid()}").values():
        client.set(k, 1)
    total = 0
    for p in cluster.primaries():
        with raw(cluster, p) as r:
            total += r.dbsize()
    assert client.dbsize() == total


def test_keys_is_the_union_over_nodes(cluster, client):
    prefix = f"ks{uid()}"
    keys = [f"{prefix}:{i}" for i in range(30)]
    for k in keys:
        client.set(k, 1)
    union = set()
    for p in cluster.primaries():
        with raw(cluster, p) as r:
            union |= set(r.keys(f"{prefix}:*"))
    got = client.keys(f"{prefix}:*")
    assert sorted(got) == sorted(union) == sorted(k.encode() for k in keys)


def test_ping_is_true(client):
    assert client.ping() is True


def test_info_without_targets_is_the_default_nodes(client):
    assert client.info("server")["tcp_port"] == client.get_default_node().port


def test_info_on_all_nodes_returns_a_dict_per_node(cluster, client):
    info = client.info(target_nodes="all")
    names = {n.name for n in client.nodes()}
    assert set(info) == names
    assert len(names) == len(cluster.primaries()) + len(cluster.replicas())
    assert all("redis_version" in v for v in info.values())


def test_scan_iter_yields_every_key_exactly_once(client):
    prefix = f"scan{uid()}"
    keys = {f"{prefix}:{i}".encode() for i in range(300)}
    for k in keys:
        client.set(k, 1)
    got = list(client.scan_iter(match=f"{prefix}:*", count=50))
    assert len(got) == len(keys)
    assert set(got) == keys


def test_flushall_empties_every_primary(fresh_cluster):
    with ClusterClient(startup_nodes=fresh_cluster.startup_nodes) as c:
        for k in key_per_node(fresh_cluster, "fl").values():
            c.set(k, 1)
        assert c.dbsize() == len(fresh_cluster.primaries())
        replies = c.flushall()  # RedisCluster's shape: {primary: True}
        assert set(replies) == {f"127.0.0.1:{p}" for p in fresh_cluster.primaries()}
        assert all(v is True for v in replies.values())
        assert c.dbsize() == 0
        for p in fresh_cluster.primaries():
            with raw(fresh_cluster, p) as r:
                assert r.dbsize() == 0


def test_target_nodes_primaries_replicas_all_random(cluster, client):
    topo_primaries = {n.name for n in client.nodes("primary")}
    topo_replicas = {n.name for n in client.nodes("replica")}
    assert client.ping(target_nodes="primaries") is True
    assert client.ping(target_nodes="replicas") is True
    assert client.ping(target_nodes="all") is True
    assert client.ping(target_nodes="random") is True

    assert set(client.info(target_nodes="primaries")) == topo_primaries
    assert set(client.info(target_nodes="replicas")) == topo_replicas
    assert set(client.info(target_nodes="all")) == topo_primaries | topo_replicas
    assert "redis_version" in client.info(target_nodes="random")

    primary_total = 0
    for p in cluster.primaries():
        with raw(cluster, p) as r:
            primary_total += r.dbsize()
    assert client.dbsize(target_nodes="primaries") == primary_total

    def replicas_match():
        total = 0
        for p in cluster.replicas():
            with raw(cluster, p) as r:
                total += r.dbsize()
        return client.dbsize(target_nodes="replicas") == total == primary_total

    poll(replicas_match, what="replica dbsize to match")
    assert client.dbsize(target_nodes="random") <= primary_total


# ---------------------------------------------------------------- options


def test_decode_responses_returns_str(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes, decode_responses=True) as c:
        k = f"dec{uid()}"
        c.set(k, "v")
        c.hset(k + "h", "f", "x")
        assert c.get(k) == "v"
        assert c.hgetall(k + "h") == {"f": "x"}
        assert all(isinstance(x, str) for x in c.keys(f"{k}*"))


@pytest.mark.parametrize("protocol", [2, 3])
def test_protocol_2_and_3_work(cluster, protocol):
    tag = f"{{p{uid()}}}"
    port = cluster.slot_owner(clusterpool.key_slot(tag.encode()))

    def ops(c, p):
        return [
            c.set(p + "s", "v"),
            c.get(p + "s"),
            c.hset(p + "h", mapping={"a": "1"}),
            c.hgetall(p + "h"),
            c.zadd(p + "z", {"m": 2}),
            c.zrange(p + "z", 0, -1, withscores=True),
            c.sadd(p + "set", "x"),
            c.smembers(p + "set"),
            c.ping(),
        ]

    with (
        ClusterClient(startup_nodes=cluster.startup_nodes, protocol=protocol) as c,
        raw(cluster, port, protocol=protocol) as r,
    ):
        same((c, r, tag), ops)
        assert c.dbsize() >= 4
        assert len(c.info(target_nodes="all")) == len(c.nodes())


@pytest.mark.parametrize(
    "key",
    [
        "{}",
        "a{}b{c}",
        "",
        b"\xff\x00binary\x80",
        "ключ-键",
        "{user1000}.following",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "{",
    ],
)
def test_keyslot_matches_cluster_keyslot(cluster, client, key):
    with raw(cluster, cluster.primaries()[0]) as r:
        want = r.execute_command("CLUSTER", "KEYSLOT", key)
    assert client.keyslot(key) == want


def test_cross_slot_mget_raises_before_sending(cluster, client):
    a, b = "a" + uid(), "b" + uid()
    while client.keyslot(a) == client.keyslot(b):
        b = "b" + uid()
    ports = cluster.primaries() + cluster.replicas()
    before = {p: cmdstat_calls(cluster, p, "mget") for p in ports}
    with pytest.raises(clusterpool.CrossSlotError):
        client.mget(a, b)
    with pytest.raises(rx.ClusterCrossSlotError):
        client.mget([a, b])
    assert {p: cmdstat_calls(cluster, p, "mget") for p in ports} == before


def test_del_and_exists_over_many_slots_are_split_and_summed(cluster, client):
    keys = list(key_per_node(cluster, f"ds{uid()}").values())
    assert len({client.keyslot(k) for k in keys}) == len(keys) > 1
    for k in keys:
        client.set(k, 1)
    assert client.exists(*keys, "missing" + uid()) == len(keys)
    assert client.delete(*keys) == len(keys)
    assert client.exists(*keys) == 0


def test_from_url_works(cluster):
    with ClusterClient.from_url(cluster.url) as c:
        k = f"url{uid()}"
        c.set(k, "1")
        assert c.get(k) == b"1"
        assert len(c.nodes("primary")) == len(cluster.primaries())


# ---------------------------------------------------------------- bad input


def test_unreachable_ports_raise_cluster_unreachable_naming_addresses():
    p1, p2 = free_port(), free_port()
    c = ClusterClient(startup_nodes=[("127.0.0.1", p1), ("127.0.0.1", p2)])
    try:
        with pytest.raises(clusterpool.ClusterUnreachableError) as ei:
            c.ping()
        assert f"127.0.0.1:{p1}" in str(ei.value)
        assert f"127.0.0.1:{p2}" in str(ei.value)
    finally:
        c.close()


def test_standalone_server_raises_not_a_cluster(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up():
            with redis.Redis(port=port, socket_timeout=1) as r:
                return r.ping()

        poll(up, what="standalone redis-server")
        c = ClusterClient(startup_nodes=[("127.0.0.1", port)])
        try:
            with pytest.raises(clusterpool.NotAClusterError):
                c.get("x")
        finally:
            c.close()
    finally:
        proc.kill()
        proc.wait(10)


def test_wrong_password_raises_authentication_error(cluster):
    user = f"cp{uid()}"
    ports = cluster.primaries() + cluster.replicas()
    for p in ports:
        with raw(cluster, p) as r:
            r.acl_setuser(user, enabled=True, passwords=["+right"], commands=["+@all"], keys=["*"])
    try:
        c = ClusterClient(startup_nodes=cluster.startup_nodes, username=user, password="wrong")
        try:
            with pytest.raises(rx.AuthenticationError):
                c.get("x")
        finally:
            c.close()
        with ClusterClient(
            startup_nodes=cluster.startup_nodes, username=user, password="right"
        ) as ok:
            assert ok.ping() is True
    finally:
        for p in ports:
            with raw(cluster, p) as r:
                r.acl_deluser(user)


def test_db_other_than_0_is_a_configuration_error(cluster):
    with pytest.raises(clusterpool.ConfigurationError):
        ClusterClient(startup_nodes=cluster.startup_nodes, db=1)


def test_unknown_keyword_is_a_configuration_error(cluster):
    with pytest.raises(clusterpool.ConfigurationError, match="no_such_option"):
        ClusterClient(startup_nodes=cluster.startup_nodes, no_such_option=1)


# ---------------------------------------------------------------- lifecycle and concurrency


def _cp_threads():
    return [t for t in threading.enumerate() if t.name.startswith("clusterpool-")]


def _fds():
    return len(os.listdir("/proc/self/fd"))


def test_close_leaves_no_threads_and_no_fds(cluster):
    threads_before = {t.ident for t in _cp_threads()}
    fds_before = _fds()
    c = ClusterClient(startup_nodes=cluster.startup_nodes)
    for k in key_per_node(cluster, f"cl{uid()}").values():
        c.set(k, 1)
        c.reader.get(k)
    c.info()
    assert _cp_threads()
    c.close()
    poll(
        lambda: {t.ident for t in _cp_threads()} <= threads_before,
        what="clusterpool threads to end",
    )
    poll(lambda: _fds() <= fds_before, what=f"fd count back to {fds_before}")


def test_context_manager_closes_client(cluster):
    with ClusterClient(startup_nodes=cluster.startup_nodes) as c:
        assert c.ping() is True
    assert c.core.closed
    with pytest.raises(clusterpool.PoolClosedError):
        c.get("x" + uid())


def test_many_threads_share_two_connections_per_node(cluster):
    prefix = f"mt{uid()}"
    errors = []
    c = ClusterClient(startup_nodes=cluster.startup_nodes, max_connections=2)
    try:

        def work(t):
            try:
                for i in range(500):
                    k = f"{prefix}:{t}:{i % 50}"
                    if i % 2:
                        c.get(k)
                    else:
                        c.set(k, i)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        stats = c.stats()
        assert stats.nodes
        assert all(p.in_use == 0 for p in stats.nodes), stats.nodes
        assert all(p.size <= 2 for p in stats.nodes)
    finally:
        c.close()
