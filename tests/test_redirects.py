"""MOVED / ASK handling against real slot migrations."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

import clusterpool
from clusterpool import ClusterClient
from waiting import poll

pytestmark = pytest.mark.slow


def raw(cluster, port):
    return redis.Redis(host=cluster.host, port=port, socket_timeout=5)


def owner_in_view(client, slot):
    for shard in client.topology().shards:
        if any(lo <= slot <= hi for lo, hi in shard.slots):
            return shard.primary.port if shard.primary else None
    return None


def other_primary(cluster, port):
    return next(p for p in cluster.primaries() if p != port)


def test_get_set_loop_sees_no_error_and_no_lost_write_during_migration(fresh_cluster):
    c = fresh_cluster
    tag = "{mig" + uuid.uuid4().hex[:6] + "}"
    slot = clusterpool.key_slot(tag.encode())
    src = c.slot_owner(slot)
    dst = other_primary(c, src)
    keys = [f"{tag}:{i}" for i in range(200)]
    client = ClusterClient(startup_nodes=c.startup_nodes)
    try:
        acked = {}
        for i, k in enumerate(keys):
            client.set(k, i)
            acked[k] = i
        c.begin_migration(slot, dst)
        c.migrate_keys(slot, dst, count=100)  # half the slot's keys now live on dst

        stop = threading.Event()
        errors: list[BaseException] = []
        mismatches: list[tuple] = []
        loops = [0]

        def loop():
            n = 1000
            while not stop.is_set():
                for k in keys:
                    try:
                        n += 1
                        client.set(k, n)
                        acked[k] = n
                        got = client.get(k)
                        if got != str(n).encode():
                            mismatches.append((k, n, got))
                    except Exception as e:  # noqa: BLE001
                        errors.append(e)
                loops[0] += 1

        t = threading.Thread(target=loop)
        t.start()
        try:
            poll(lambda: loops[0] >= 1, what="one full loop while half migrated")
            c.migrate_keys(slot, dst)  # ASK for every moved key
            start = loops[0]
            poll(lambda: loops[0] >= start + 1, what="a loop after all keys moved")
            c.finish_migration(slot, dst)  # MOVED from now on
            start = loops[0]
            poll(lambda: loops[0] >= start + 2, what="two loops after the slot moved")
        finally:
            stop.set()
            t.join(60)
        assert not errors, errors[:3]
        assert not mismatches, mismatches[:3]
        with raw(c, dst) as r:
            for k in keys:
                assert client.get(k) == str(acked[k]).encode()
                assert r.get(k) == str(acked[k]).encode()
        poll(lambda: owner_in_view(client, slot) == dst, what="client's map to show the new owner")
    finally:
        client.close()


def _move_empty_slots(c, slots, src, dst):
    """Move empty slots src -> dst by raw CLUSTER SETSLOT, without the client knowing."""
    src_id, dst_id = c.node_id(src), c.node_id(dst)
    with raw(c, src) as rs, raw(c, dst) as rd:
        for s in slots:
            rd.execute_command("CLUSTER", "SETSLOT", s, "IMPORTING", src_id)
            rs.execute_command("CLUSTER", "SETSLOT", s, "MIGRATING", dst_id)
            rd.execute_command("CLUSTER", "SETSLOT", s, "NODE", dst_id)
            rs.execute_command("CLUSTER", "SETSLOT", s, "NODE", dst_id)
    c._wait_slots_owned(list(slots), dst, 30)


def test_burst_of_moved_replies_costs_a_bounded_number_of_refreshes(fresh_cluster):
    c = fresh_cluster
    src = c.primaries()[0]
    dst = other_primary(c, src)
    moved_slots = c.slots_of(src)[:1000]
    want = set(moved_slots)
    keys: dict[int, str] = {}
    i = 0
    while len(keys) < len(want):
        k = f"b{i}"
        s = clusterpool.key_slot(k.encode())
        if s in want:
            keys.setdefault(s, k)
        i += 1
    # no periodic refresh and no CLUSTER INFO watch (health_interval): only the MOVED replies tell it
    client = ClusterClient(startup_nodes=c.startup_nodes, refresh_interval=300, health_interval=300)
    try:
        client.get(keys[moved_slots[0]])  # discover the old map
        before = client.stats().refreshes
        requests_before = client.stats().refresh_requests
        _move_empty_slots(c, moved_slots, src, dst)
        assert owner_in_view(client, moved_slots[0]) == src  # client has not noticed yet

        errors: list[BaseException] = []

        def burst(part):
            for s in part:
                try:
                    assert client.get(keys[s]) is None
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

        threads = [threading.Thread(target=burst, args=(moved_slots[j::16],)) for j in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        refreshes = client.stats().refreshes - before
        # every MOVED asks for a refresh; the first refresh repoints all 1000 slots, so
        # only the gets racing it see MOVED — but each of those must not cost a refresh
        assert client.stats().refresh_requests > requests_before
        assert 1 <= refreshes <= 10, refreshes
        poll(
            lambda: all(owner_in_view(client, s) == dst for s in moved_slots[::97]),
            what="client's map to show the moved slots at the new owner",
        )
    finally:
        client.close()


def test_redirection_loop_raises_too_many_redirections_naming_the_slot(cluster):
    # Owner says ASK (slot MIGRATING to B) but B is not IMPORTING it, so B answers MOVED
    # back to the owner: a real ASK/MOVED ping-pong.
    key = "{loop" + uuid.uuid4().hex[:6] + "}k"
    slot = clusterpool.key_slot(key.encode())
    owner = cluster.slot_owner(slot)
    other = other_primary(cluster, owner)
    client = ClusterClient(startup_nodes=cluster.startup_nodes, max_redirections=6)
    try:
        client.ping()
        with raw(cluster, owner) as r:
            r.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(other))
        try:
            with pytest.raises(clusterpool.TooManyRedirectionsError) as ei:
                client.get(key)  # key does not exist on the owner -> ASK
            assert f"slot {slot}" in str(ei.value)
            assert isinstance(ei.value, redis.exceptions.ClusterError)
        finally:
            with raw(cluster, owner) as r:
                r.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        assert client.get(key) is None  # slot is stable again: works
    finally:
        client.close()
