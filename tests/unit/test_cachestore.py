"""The cache store without a server: bounds, indexes, tickets and what each flush drops."""

from __future__ import annotations

from clusterpool.cachestore import (MISS, CacheStore, FlushReason, cache_key, copy_reply, forget_written,
                                    slots_reassigned)
from clusterpool.commands import CommandTable
from clusterpool.topology import Node, Shard, Topology


def store(**kw) -> CacheStore:
    return CacheStore(kw.get("max_entries", 1000), kw.get("max_bytes", 1 << 20), kw.get("ttl"))


def put(s: CacheStore, key: bytes, value, slot: int = 1, node: str = "n1", cmd: str = "GET", now: float = 0.0) -> bool:
    ckey = (cmd, key)
    return s.finish_one(s.begin(ckey, key, slot), node, value, now)


def test_a_stored_reply_is_a_hit_and_an_unknown_key_a_miss():
    s = store()
    assert put(s, b"k", b"v")
    assert s.get(("GET", b"k")) == b"v"
    assert s.get(("GET", b"other")) is MISS
    st = s.stats()
    assert (st.hits, st.misses, st.stores, st.entries) == (1, 1, 1, 1)


def test_an_invalidation_while_the_read_is_in_flight_voids_its_reply():
    s = store()
    t = s.begin(("GET", b"k"), b"k", 1)
    s.invalidate([b"k"])
    assert not s.finish_one(t, "n1", b"old")
    assert s.get(("GET", b"k")) is MISS


def test_an_invalidation_of_another_key_leaves_the_read_storable():
    s = store()
    t = s.begin(("GET", b"k"), b"k", 1)
    s.invalidate([b"other"])
    assert s.finish_one(t, "n1", b"v")


def test_a_bulk_flush_while_the_read_is_in_flight_voids_its_reply():
    s = store()
    t = s.begin(("GET", b"k"), b"k", 1)
    s.flush_node("n2", FlushReason.LINK_BROKEN)
    assert not s.finish_one(t, "n1", b"v")


def test_a_read_far_behind_many_invalidations_is_not_stored():
    s = store()
    t = s.begin(("GET", b"k"), b"k", 1)
    s.invalidate([f"x{i}".encode() for i in range(5000)])
    assert not s.finish_one(t, "n1", b"v")


def test_an_untracked_reply_is_never_stored():
    s = store()
    assert not s.finish_one(s.begin(("GET", b"k"), b"k", 1), "n1", b"v", tracked=False)


def test_invalidating_a_key_drops_every_command_cached_for_it():
    s = store()
    put(s, b"h", [b"f", b"v"], cmd="HGETALL")
    put(s, b"h", b"v", cmd="HGET")
    assert s.invalidate([b"h"]) == 2
    assert s.stats().entries == 0 and s.stats().bytes == 0


def test_flushing_a_node_drops_only_what_came_from_it():
    s = store()
    put(s, b"a", b"1", node="n1")
    put(s, b"b", b"2", node="n2")
    assert s.flush_node("n1", FlushReason.LINK_BROKEN) == 1
    assert s.get(("GET", b"a")) is MISS and s.get(("GET", b"b")) == b"2"
    assert s.stats().flushes == {"link_broken": 1}


def test_flushing_slots_drops_their_entries_through_the_slot_index():
    s = store()
    put(s, b"a", b"1", slot=5)
    put(s, b"b", b"2", slot=6)
    assert s.flush_slots([5]) == 1
    assert s.get(("GET", b"b")) == b"2"


def test_the_entry_bound_evicts_the_least_recently_used():
    s = store(max_entries=2)
    put(s, b"a", b"1")
    put(s, b"b", b"2")
    s.get(("GET", b"a"))
    put(s, b"c", b"3")
    assert s.get(("GET", b"b")) is MISS and s.get(("GET", b"a")) == b"1"
    assert s.stats().evictions == 1


def test_a_million_distinct_keys_stay_inside_the_byte_bound():
    limit = 8 << 20
    s = store(max_entries=10**7, max_bytes=limit)
    for i in range(1_000_000):
        k = b"key:%d" % i
        s.finish_one(s.begin(("GET", k), k, i & 16383), "n1", b"x" * 32)
    st = s.stats()
    assert st.bytes <= limit and st.entries < 1_000_000 and st.evictions == 1_000_000 - st.entries


def test_a_reply_larger_than_the_byte_bound_is_not_stored():
    s = store(max_bytes=2048)
    put(s, b"big", b"x" * 4096)
    assert s.stats().entries == 0


def test_the_ttl_expires_entries():
    s = store(ttl=1.0)
    put(s, b"k", b"v", now=10.0)
    assert s.get(("GET", b"k"), 10.5) == b"v"
    assert s.get(("GET", b"k"), 11.0) is MISS
    assert s.stats().expired == 1


def test_a_container_reply_is_handed_out_as_a_copy():
    s = store()
    put(s, b"l", [b"a", [b"b"]], cmd="LRANGE")
    got = s.get(("LRANGE", b"l"))
    got[1].append(b"mine")
    assert s.get(("LRANGE", b"l")) == [b"a", [b"b"]]
    assert copy_reply({b"k": [1]}) == {b"k": [1]}


def test_an_unhashable_argument_means_no_cache_key():
    assert cache_key(None, ("GET", ["k"])) is None
    assert cache_key(None, ("GET", "k")) == ("GET", "k")
    assert cache_key("replica-read", ("GET", "k")) == ("replica-read", ("GET", "k"))


def test_a_write_drops_its_keys_and_a_keyless_write_everything():
    table = CommandTable.bundled_with(None)
    s = store()
    put(s, b"a", b"1")
    put(s, b"b", b"2")
    forget_written(s, table, ("GET", "a"))
    assert s.stats().entries == 2
    forget_written(s, table, ("DEL", "a"))
    assert s.get(("GET", b"a")) is MISS and s.get(("GET", b"b")) == b"2"
    forget_written(s, table, ("FLUSHALL",))
    assert s.stats().entries == 0 and s.stats().flushes == {"own_write": 1}


def _topo(primary: str, replica: str) -> Topology:
    def node(name: str, role: str) -> Node:
        host, port = name.split(":")
        return Node(host, int(port), role=role)

    return Topology((Shard(((0, 100),), node(primary, "primary"), (node(replica, "replica"),)),
                     Shard(((101, 16383),), node("h:3", "primary"))))


def test_slots_reassigned_are_those_whose_serving_nodes_changed():
    old = _topo("h:1", "h:2")
    assert slots_reassigned(old, _topo("h:1", "h:2")) == []
    assert slots_reassigned(old, _topo("h:2", "h:1")) == list(range(101))
    assert slots_reassigned(None, old) == []


def test_an_mget_is_served_from_cached_gets_or_read_with_one_ticket_for_its_slot():
    from clusterpool.cachestore import mget_read

    s = store()
    keys = ["{t}a", "{t}b"]
    values, ticket = mget_read(s, None, keys)
    assert values is None and ticket is not None
    assert s.finish(ticket, list(zip(ticket[2], ticket[3], [b"1", b"2"])), ticket[4], "n1")
    assert mget_read(s, None, keys) == ([b"1", b"2"], None)


def test_an_mget_across_slots_or_with_an_unhashable_key_is_not_cached():
    from clusterpool.cachestore import mget_read

    assert mget_read(store(), None, ["a", "b"]) == (None, None)  # different slots
    assert mget_read(store(), None, [["a"]]) == (None, None)
