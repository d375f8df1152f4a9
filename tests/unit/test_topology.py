"""clusterpool.topology: parsing CLUSTER SHARDS / CLUSTER SLOTS, the slot table, MOVED updates."""

from __future__ import annotations

import json

import pytest

from clusterpool.slots import SLOT_COUNT
from clusterpool.topology import (
    PRIMARY,
    REPLICA,
    Node,
    Shard,
    Topology,
    parse_shards,
    parse_slots,
    single_node,
)

RANGES = [(0, 5460), (5461, 10922), (10923, 16383)]


def _node(port, role, *, health="online", endpoint="127.0.0.1", tls_port=None, offset=100, nid=None):
    d = {
        "id": nid or f"id{port}",
        "port": port,
        "ip": "127.0.0.1",
        "endpoint": endpoint,
        "role": role,
        "replication-offset": offset,
        "health": health,
    }
    if tls_port is not None:
        d["tls-port"] = tls_port
    return d


def shards_resp3(overrides=None, **node_kw):
    """3 shards x 1 replica, RESP3 shape (dicts with str keys). overrides: {port: {field: value}}."""
    overrides = overrides or {}
    out = []
    for i, (start, end) in enumerate(RANGES):
        p, r = 7000 + i, 7003 + i
        nodes = []
        for port, role in ((p, "master"), (r, "replica")):
            nd = _node(port, role, **node_kw)
            nd.update(overrides.get(port, {}))
            nodes.append(nd)
        out.append({"slots": [start, end], "nodes": nodes})
    return out


def _to_resp2(reply):
    """The same reply as RESP2 gives it: flat [k, v, ...] lists with bytes keys and strings."""

    def b(v):
        return v.encode() if isinstance(v, str) else v

    def flat(d):
        out = []
        for k, v in d.items():
            out += [k.encode(), b(v)]
        return out

    return [[b"slots", list(sh["slots"]), b"nodes", [flat(n) for n in sh["nodes"]]] for sh in reply]


def shards_resp2(overrides=None, **node_kw):
    return _to_resp2(shards_resp3(overrides, **node_kw))


@pytest.fixture(params=["resp3", "resp2"])
def shape(request):
    return shards_resp3 if request.param == "resp3" else shards_resp2


# ---------------------------------------------------------------- parse_shards


def test_parse_shards_gives_three_shards_with_primary_and_replica(shape):
    t = parse_shards(shape())
    assert len(t.shards) == 3
    for i, s in enumerate(t.shards):
        assert s.slots == (RANGES[i],)
        assert s.primary == Node("127.0.0.1", 7000 + i, PRIMARY, f"id{7000 + i}", "online", 100)
        assert [r.name for r in s.replicas] == [f"127.0.0.1:{7003 + i}"]
        assert s.replicas[0].role == REPLICA
        assert s.id == f"id{7000 + i}"


def test_parse_shards_resp2_and_resp3_give_equal_topologies():
    assert parse_shards(shards_resp2()) == parse_shards(shards_resp3())


def test_parse_shards_slot_table_maps_every_slot_to_its_shard(shape):
    t = parse_shards(shape())
    assert len(t.slot_table) == SLOT_COUNT
    for slot in range(SLOT_COUNT):
        shard = t.shard_for_slot(slot)
        i = 0 if slot <= 5460 else 1 if slot <= 10922 else 2
        assert shard is not None and shard.primary.port == 7000 + i


def test_parse_shards_covered_counts_all_slots(shape):
    assert parse_shards(shape()).covered == SLOT_COUNT


def test_parse_shards_nodes_primaries_replicas(shape):
    t = parse_shards(shape())
    assert sorted(n.port for n in t.primaries) == [7000, 7001, 7002]
    assert sorted(n.port for n in t.replicas) == [7003, 7004, 7005]
    assert set(t.by_name) == {f"127.0.0.1:{p}" for p in range(7000, 7006)}


def test_parse_shards_online_replica_is_readable(shape):
    t = parse_shards(shape())
    assert all(len(s.readable) == 1 for s in t.shards)


@pytest.mark.parametrize("health", ["failed", "fail"])
def test_parse_shards_failed_replica_is_not_readable(shape, health):
    t = parse_shards(shape({7003: {"health": health}}))
    s = t.shard_for_slot(0)
    assert [r.port for r in s.replicas] == [7003]
    assert s.replicas[0].health == health
    assert s.readable == ()
    assert t.shard_for_slot(6000).readable != ()


def test_parse_shards_loading_replica_stays_readable(shape):
    # Node.usable: Redis 7.0 reports "loading" for any replica whose gossiped offset is 0
    # (also a healthy replica of an unwritten primary), so only "failed" excludes it.
    t = parse_shards(shape({7003: {"health": "loading"}}))
    s = t.shard_for_slot(0)
    assert s.replicas[0].health == "loading"
    assert [r.port for r in s.readable] == [7003]


@pytest.mark.parametrize("health", ["failed", "fail"])
def test_parse_shards_failed_primary_gives_shard_without_primary(shape, health):
    t = parse_shards(shape({7000: {"health": health}}))
    s = t.shard_for_slot(0)
    assert s.primary is None
    assert s.slots == ((0, 5460),)
    assert [r.port for r in s.replicas] == [7003]


def test_parse_shards_promoted_replica_wins_over_the_failed_primary_still_listed_as_master(shape):
    # Valkey 8.0 after a failover: the dead primary stays in the shard as "master", health fail
    t = parse_shards(shape({7000: {"health": "fail"}, 7003: {"role": "master"}}))
    s = t.shard_for_slot(0)
    assert s.primary is not None and s.primary.port == 7003
    assert [(r.port, r.role) for r in s.replicas] == [(7000, "replica")]
    assert s.readable == ()


def test_parse_shards_failed_primary_slots_are_not_covered(shape):
    t = parse_shards(shape({7000: {"health": "failed"}}))
    assert t.covered == SLOT_COUNT - 5461
    assert "127.0.0.1:7000" not in [p.name for p in t.primaries]


def test_parse_shards_unknown_endpoint_falls_back_to_ip(shape):
    t = parse_shards(shape(endpoint="?"), "10.0.0.9")
    assert {n.host for n in t.nodes} == {"127.0.0.1"}


def test_parse_shards_unknown_endpoint_and_ip_fall_back_to_source_host():
    reply = shards_resp3(endpoint="?")
    for sh in reply:
        for nd in sh["nodes"]:
            nd["ip"] = "?"
    t = parse_shards(reply, "10.0.0.9")
    assert {n.host for n in t.nodes} == {"10.0.0.9"}


def test_parse_shards_empty_endpoint_falls_back_to_source_host_resp2():
    reply = shards_resp3(endpoint="")
    for sh in reply:
        for nd in sh["nodes"]:
            nd["ip"] = ""
    t = parse_shards(_to_resp2(reply), "10.0.0.9")
    assert {n.host for n in t.nodes} == {"10.0.0.9"}


def test_parse_shards_prefers_endpoint_over_ip():
    t = parse_shards(shards_resp3(endpoint="redis-a.example"))
    assert {n.host for n in t.nodes} == {"redis-a.example"}


def test_parse_shards_applies_address_map(shape):
    t = parse_shards(shape(), address_map=lambda h, p: ("public.example", p + 100))
    assert sorted(n.name for n in t.primaries) == [
        "public.example:7100",
        "public.example:7101",
        "public.example:7102",
    ]
    assert sorted(n.port for n in t.replicas) == [7103, 7104, 7105]


def test_parse_shards_tls_uses_tls_port(shape):
    reply = shape({p: {"tls-port": p + 1000} for p in range(7000, 7006)})
    t = parse_shards(reply, tls=True)
    assert sorted(n.port for n in t.nodes) == list(range(8000, 8006))


def test_parse_shards_without_tls_ignores_tls_port(shape):
    reply = shape({p: {"tls-port": p + 1000} for p in range(7000, 7006)})
    t = parse_shards(reply)
    assert sorted(n.port for n in t.nodes) == list(range(7000, 7006))


def test_parse_shards_records_source():
    assert parse_shards(shards_resp3(), source="127.0.0.1:7000").source == "127.0.0.1:7000"


def test_parse_shards_multiple_slot_ranges_in_one_shard():
    reply = shards_resp3()
    reply[0]["slots"] = [0, 100, 200, 300, 101, 199]
    t = parse_shards(reply)
    assert t.shards[0].slots == ((0, 300),)


def test_parse_shards_accepts_bytes_slot_numbers():
    reply = shards_resp2()
    for sh in reply:
        sh[1] = [str(x).encode() for x in sh[1]]
    assert parse_shards(reply).covered == SLOT_COUNT


def test_parse_shards_skips_empty_shard():
    reply = shards_resp3() + [{"slots": [], "nodes": []}]
    assert len(parse_shards(reply).shards) == 3


def test_parse_shards_primary_without_slots_is_kept():
    reply = shards_resp3() + [{"slots": [], "nodes": [_node(7010, "master")]}]
    t = parse_shards(reply)
    assert len(t.shards) == 4
    assert "127.0.0.1:7010" in t.by_name
    assert t.covered == SLOT_COUNT


# ---------------------------------------------------------------- parse_slots


def slots_reply():
    return [
        [0, 5460, [b"127.0.0.1", 7000, b"id7000"], [b"127.0.0.1", 7003, b"id7003"]],
        [5461, 10922, [b"127.0.0.1", 7001, b"id7001"], [b"127.0.0.1", 7004, b"id7004"]],
        [10923, 16383, [b"127.0.0.1", 7002, b"id7002"], [b"127.0.0.1", 7005, b"id7005"]],
    ]


def test_parse_slots_gives_three_shards():
    t = parse_slots(slots_reply())
    assert [s.slots for s in t.shards] == [(r,) for r in RANGES]
    assert [s.primary.name for s in t.shards] == [f"127.0.0.1:{p}" for p in (7000, 7001, 7002)]
    assert [[r.name for r in s.replicas] for s in t.shards] == [
        [f"127.0.0.1:{p}"] for p in (7003, 7004, 7005)
    ]
    assert t.shards[0].primary.id == "id7000"
    assert t.shards[0].replicas[0].role == REPLICA


def test_parse_slots_covers_all_slots():
    assert parse_slots(slots_reply()).covered == SLOT_COUNT


def test_parse_slots_groups_ranges_of_one_primary():
    reply = [
        [0, 99, [b"127.0.0.1", 7000, b"a"]],
        [100, 199, [b"127.0.0.1", 7001, b"b"]],
        [200, 299, [b"127.0.0.1", 7000, b"a"]],
    ]
    t = parse_slots(reply)
    assert len(t.shards) == 2
    assert t.shard_for_slot(250).slots == ((0, 99), (200, 299))


def test_parse_slots_empty_host_falls_back_to_source_host():
    reply = [[0, 16383, [b"", 7000, b"a"], [b"", 7001, b"b"]]]
    t = parse_slots(reply, "10.1.1.1")
    assert {n.host for n in t.nodes} == {"10.1.1.1"}


def test_parse_slots_question_mark_host_falls_back_to_source_host():
    t = parse_slots([[0, 16383, [b"?", 7000, b"a"]]], "10.1.1.1")
    assert t.primaries[0].host == "10.1.1.1"


def test_parse_slots_applies_address_map():
    t = parse_slots(slots_reply(), address_map=lambda h, p: ("nat", p + 1))
    assert sorted(n.name for n in t.nodes) == [f"nat:{p}" for p in range(7001, 7007)]


def test_parse_slots_and_parse_shards_agree():
    assert parse_slots(slots_reply()).shards == parse_shards(
        shards_resp3(offset=0)
    ).shards


# ---------------------------------------------------------------- equality / serialisation


def test_topology_equality_ignores_version():
    t = parse_shards(shards_resp3())
    assert t == t.with_version(42)
    assert t.with_version(42).version == 42


def test_topology_inequality_when_shards_differ():
    a = parse_shards(shards_resp3())
    b = parse_shards(shards_resp3({7003: {"health": "loading"}}))
    assert a != b


def test_topology_equality_ignores_source():
    a = parse_shards(shards_resp3(), source="127.0.0.1:7000")
    b = parse_shards(shards_resp3(), source="127.0.0.1:7001")
    assert a == b


def test_topology_equality_ignores_replication_offsets():
    a = parse_shards(shards_resp3(offset=100))
    b = parse_shards(shards_resp3(offset=250))
    assert a == b


def test_as_dict_is_json_serialisable():
    t = parse_shards(shards_resp3({7000: {"health": "failed"}}), source="127.0.0.1:7001")
    d = json.loads(json.dumps(t.as_dict()))
    assert d["source"] == "127.0.0.1:7001"
    assert d["covered_slots"] == SLOT_COUNT - 5461
    assert d["shards"][0]["primary"] is None
    assert d["shards"][1]["slots"] == [[5461, 10922]]
    assert d["shards"][1]["primary"]["name"] == "127.0.0.1:7001"
    assert d["shards"][1]["replicas"][0]["role"] == REPLICA


def test_single_node_sends_every_slot_to_one_node():
    t = single_node("h", 1)
    assert t.covered == SLOT_COUNT
    assert t.shard_for_slot(0) is t.shard_for_slot(16383)
    assert t.source == "h:1"


# ---------------------------------------------------------------- with_slot_moved


@pytest.fixture
def topo():
    return parse_shards(shards_resp3(), source="s").with_version(5)


def test_moved_slot_to_existing_primary_splits_source_range(topo):
    t = topo.with_slot_moved(100, "127.0.0.1", 7001)
    assert t.shard_for_slot(100).primary.port == 7001
    assert t.shard_for_slot(99).primary.port == 7000
    assert t.shard_for_slot(101).primary.port == 7000
    src = next(s for s in t.shards if s.primary.port == 7000)
    dst = next(s for s in t.shards if s.primary.port == 7001)
    assert src.slots == ((0, 99), (101, 5460))
    assert dst.slots == ((100, 100), (5461, 10922))


def test_moved_slot_leaves_other_shards_unchanged(topo):
    t = topo.with_slot_moved(100, "127.0.0.1", 7001)
    assert t.shards[2] == topo.shards[2]
    assert t.covered == SLOT_COUNT
    assert len(t.shards) == 3
    for slot in range(SLOT_COUNT):
        if slot != 100:
            assert t.shard_for_slot(slot).primary == topo.shard_for_slot(slot).primary


def test_moved_slot_keeps_replicas_of_both_shards(topo):
    t = topo.with_slot_moved(100, "127.0.0.1", 7001)
    assert [r.port for r in t.shard_for_slot(100).replicas] == [7004]
    assert [r.port for r in t.shard_for_slot(0).replicas] == [7003]


def test_moved_slot_increments_version(topo):
    assert topo.with_slot_moved(100, "127.0.0.1", 7001).version == 6


def test_moved_slot_does_not_change_original(topo):
    before = topo.as_dict()
    topo.with_slot_moved(100, "127.0.0.1", 7001)
    assert topo.as_dict() == before


def test_moved_first_and_last_slot_of_range(topo):
    t = topo.with_slot_moved(0, "127.0.0.1", 7002).with_slot_moved(5460, "127.0.0.1", 7001)
    src = next(s for s in t.shards if s.primary.port == 7000)
    assert src.slots == ((1, 5459),)
    assert next(s for s in t.shards if s.primary.port == 7001).slots == ((5460, 10922),)
    assert next(s for s in t.shards if s.primary.port == 7002).slots == ((0, 0), (10923, 16383))


def test_moved_slot_to_its_current_owner_changes_nothing_but_version(topo):
    t = topo.with_slot_moved(100, "127.0.0.1", 7000)
    assert t == topo
    assert t.version == topo.version + 1


def test_moved_slot_to_unknown_node_creates_new_shard(topo):
    t = topo.with_slot_moved(6000, "10.9.9.9", 7777)
    assert len(t.shards) == 4
    new = t.shard_for_slot(6000)
    assert new.primary == Node("10.9.9.9", 7777, PRIMARY)
    assert new.slots == ((6000, 6000),)
    assert new.replicas == ()
    assert t.shard_for_slot(5999).primary.port == 7001
    assert next(s for s in t.shards if s.primary.port == 7001).slots == ((5461, 5999), (6001, 10922))
    assert "10.9.9.9:7777" in t.by_name
    assert t.covered == SLOT_COUNT


def test_moved_slot_to_replica_makes_it_primary_of_new_shard(topo):
    t = topo.with_slot_moved(100, "127.0.0.1", 7003)
    new = t.shard_for_slot(100)
    assert new.primary.name == "127.0.0.1:7003"
    assert new.primary.role == PRIMARY
    assert new.primary.id == "id7003"
    assert new.slots == ((100, 100),)
    old = t.shard_for_slot(0)
    assert old.primary.port == 7000
    assert old.replicas == ()
    assert old.readable == ()
    assert "127.0.0.1:7003" not in [r.name for r in t.replicas]
    assert t.by_name["127.0.0.1:7003"].role == PRIMARY
    assert len(t.shards) == 4


def test_moved_only_slot_away_keeps_primary_shard():
    t0 = Topology(
        (
            Shard(((0, 0),), Node("h", 1, PRIMARY, "a"), (), "a"),
            Shard(((1, 16383),), Node("h", 2, PRIMARY, "b"), (), "b"),
        )
    )
    t = t0.with_slot_moved(0, "h", 2)
    assert t.shard_for_slot(0).primary.port == 2
    assert "h:1" in t.by_name
    a = next(s for s in t.shards if s.primary.port == 1)
    assert a.slots == ()
    assert t.shard_for_slot(0).slots == ((0, 16383),)


def test_served_by_names_the_slots_primary_only(topo):
    owner = topo.shard_for_slot(100).primary
    other = next(n for n in topo.nodes if n.name != owner.name)
    assert topo.served_by(100, owner.host, owner.port)
    assert not topo.served_by(100, other.host, other.port)
    assert topo.with_slot_moved(100, other.host, other.port).served_by(100, other.host, other.port)
