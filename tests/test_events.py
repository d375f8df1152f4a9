"""Events and inspection against real clusters: node added/removed, slots moved, failover,
subscriber isolation, the events() iterator, off(), MOVED bursts, frozen snapshots.

Destructive tests use `fresh_cluster`; everything waits by polling with a deadline.
"""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from clusterpool import (
    ClusterClient,
    Event,
    NodeAdded,
    NodeRemoved,
    RoleChanged,
    SlotsMoved,
    TopologyRefreshed,
)
from clusterpool.slots import slot_of
from waiting import poll

WAIT = 30.0


class Recorder:
    """A thread-safe list of received events."""

    def __init__(self):
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, e):
        with self._lock:
            self.events.append(e)

    def method(self, e):  # a bound-method subscriber
        self(e)

    def of(self, cls, pred=lambda e: True):
        with self._lock:
            return [e for e in self.events if isinstance(e, cls) and pred(e)]

    def wait(self, cls, pred=lambda e: True, timeout=WAIT, what=None):
        return poll(lambda: self.of(cls, pred), timeout, what=what or cls.__name__)[0]


def name(cluster, port):
    return f"{cluster.host}:{port}"


def client_for(cluster, **kw):
    kw.setdefault("refresh_interval", 0.5)
    return ClusterClient(startup_nodes=cluster.startup_nodes, **kw)


def boom(e):
    raise RuntimeError(f"subscriber failure on {e.name}")


# ---------------------------------------------------------------- shape changes


@pytest.mark.chaos
def test_node_added_slot_moved_and_node_removed(fresh_cluster):
    c = fresh_cluster
    client = client_for(c)
    client.on("*", boom)  # first in line, raises on every event
    rec = Recorder()
    client.on("*", rec)
    stream = client.events()
    try:
        client.connect()
        key = "foo"
        slot = slot_of(key)
        src = c.slot_owner(slot)
        client.set(key, "bar")

        new = c.add_node()
        added = rec.wait(NodeAdded, lambda e: e.node.name == name(c, new), what=f"node_added {new}")
        assert added.node.role == "primary" and added.node.port == new and added.node.id == c.node_id(new)
        assert new in {n.port for n in client.nodes("primary")}
        assert not rec.of(NodeRemoved)

        # no command on the slot until the event: a MOVED would patch the map first
        c.move_slot(slot, new)
        moved = rec.wait(SlotsMoved, lambda e: e.target == name(c, new), what="slots_moved to new node")
        assert moved.ranges == ((slot, slot),)
        assert moved.source == name(c, src)
        assert client.node_for(key).port == new
        assert client.get(key) == b"bar"  # commands keep working with a raising subscriber

        c.move_slot(slot, src)
        back = rec.wait(SlotsMoved, lambda e: e.source == name(c, new), what="slots_moved back")
        assert back.ranges == ((slot, slot),) and back.target == name(c, src)
        assert client.get(key) == b"bar"

        c.remove_node(new)
        removed = rec.wait(NodeRemoved, lambda e: e.node.name == name(c, new), what=f"node_removed {new}")
        assert removed.node.port == new and removed.node.id == added.node.id
        assert new not in {n.port for n in client.nodes()}
        assert new not in {int(s.node.rpartition(":")[2]) for s in client.stats().nodes}
        assert client.get(key) == b"bar"

        # the iterator saw the same changes, in order
        seen = []
        while (e := stream.get(timeout=0.1)) is not None:
            seen.append(e)
        kinds = [type(e) for e in seen if isinstance(e, NodeAdded | SlotsMoved | NodeRemoved)]
        assert kinds.index(NodeAdded) < kinds.index(SlotsMoved) < kinds.index(NodeRemoved)
        assert any(isinstance(e, TopologyRefreshed) and e.changes > 0 for e in seen)
        for e in seen:
            json.dumps(e.as_dict(), default=str)
    finally:
        stream.close()
        client.close()


@pytest.mark.chaos
def test_failover_reports_role_changes(fresh_cluster):
    c = fresh_cluster
    client = client_for(c)
    rec = Recorder()
    client.on("role_changed", rec)
    moves = Recorder()
    client.on("slots_moved", moves)
    try:
        client.connect()
        slot = slot_of("foo")
        old = c.slot_owner(slot)
        old_slots = set(c.slots_of(old))
        replica = c.replicas_of(old)[0]
        client.set("foo", "1")

        c.failover(replica)

        promoted = rec.wait(RoleChanged, lambda e: e.node.name == name(c, replica) and e.new_role == "primary",
                            what=f"{replica} promoted")
        assert promoted.old_role == "replica"
        assert promoted.old_primary == name(c, old)
        demoted = rec.wait(RoleChanged, lambda e: e.node.name == name(c, old), what=f"{old} demoted")
        assert (demoted.old_role, demoted.new_role, demoted.old_primary) == ("primary", "replica", None)
        assert not rec.of(Event, lambda e: not isinstance(e, RoleChanged))  # only what was asked for

        # the primary's slots moved with it
        moved = moves.wait(SlotsMoved, lambda e: e.target == name(c, replica), what="slots to promoted node")
        assert moved.source == name(c, old)
        got = {s for a, b in moved.ranges for s in range(a, b + 1)}
        assert got == old_slots
        assert client.node_for("foo").port == replica
        assert client.get("foo") == b"1"
        client.set("foo", "2")
        assert client.get("foo") == b"2"
    finally:
        client.close()


# ---------------------------------------------------------------- subscribers


def test_raising_callback_does_not_break_commands_or_other_subscribers(cluster):
    client = client_for(cluster)
    rec = Recorder()
    client.on("*", boom)
    client.on("topology_refreshed", boom)
    client.on("*", rec)
    try:
        client.connect()  # first map: publishes topology_refreshed
        client.set("events:raise", "x")
        assert client.get("events:raise") == b"x"
        first = rec.wait(TopologyRefreshed)
        assert first.version >= 1 and first.source
        assert client.core.bus.flush(5.0)
        assert client.get("events:raise") == b"x"
        client.delete("events:raise")
    finally:
        client.close()


def test_events_iterator_yields_events(cluster):
    client = client_for(cluster)
    try:
        with client.events() as ev:
            client.connect()
            it = iter(ev)
            first = next(it)  # published synchronously by connect(): does not block
            assert isinstance(first, TopologyRefreshed)
            assert first.version >= 1 and first.changes == 0
            assert first.as_dict()["event"] == "topology_refreshed"
    finally:
        client.close()


def test_events_iterator_ends_when_client_closes(cluster):
    client = client_for(cluster)
    client.connect()
    got = []
    with client.events() as ev:
        t = threading.Thread(target=lambda: got.extend(ev), daemon=True)
        t.start()
        client.close()
        t.join(10)
        assert not t.is_alive()


def test_off_unsubscribes(cluster):
    client = client_for(cluster)
    kept, dropped, bound = Recorder(), Recorder(), Recorder()
    client.on("*", kept)
    client.on("*", dropped)
    client.on("topology_refreshed", bound.method)
    client.off("*", dropped)
    client.off("topology_refreshed", bound.method)  # a new bound-method object, equal to the first
    try:
        client.connect()
        kept.wait(TopologyRefreshed)
        assert client.core.bus.flush(5.0)
        assert dropped.events == []
        assert bound.events == []
    finally:
        client.close()


def test_on_rejects_unknown_event_names(cluster):
    client = client_for(cluster)
    try:
        with pytest.raises(ValueError, match="unknown event"):
            client.on("node_addded", print)
        with pytest.raises(TypeError):
            client.on("*", "not callable")
    finally:
        client.close()


# ---------------------------------------------------------------- MOVED bursts


@pytest.mark.chaos
def test_burst_of_moved_replies_causes_bounded_refreshes(fresh_cluster):
    c = fresh_cluster
    src, dst = c.primaries()[:2]
    # 20 slots of `src`, 50 keys each (hash tags), 1000 keys in all
    tags: dict[int, str] = {}
    i = 0
    while len(tags) < 20:
        tag = f"t{i}"
        s = slot_of(tag)
        if s not in tags and c.slot_owner(s) == src:
            tags[s] = tag
        i += 1
    keys = [f"{{{tag}}}:{j}" for tag in tags.values() for j in range(50)]
    # periodic refresh and the CLUSTER INFO watch (health_interval) out of the way: the cached map
    # must stay stale until MOVED says otherwise
    client = client_for(c, refresh_interval=3600.0, health_interval=3600.0)
    moves = Recorder()
    client.on("slots_moved", moves)
    try:
        for k in keys:
            client.set(k, k)
        assert all(client.node_for(k).port == src for k in keys)
        c.move_slots(list(tags), dst)  # behind the client's back
        assert all(client.node_for(k).port == src for k in keys)  # still the old map
        before = client.stats()

        results: dict[str, bytes | None] = {}
        errors: list[BaseException] = []

        def worker(part):
            try:
                for k in part:
                    results[k] = client.get(k)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(keys[n::4],)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        assert len(results) == 1000 and all(results[k] == k.encode() for k in keys)

        after = client.stats()
        assert after.refresh_requests > before.refresh_requests  # MOVED replies were seen
        assert after.refreshes - before.refreshes <= 10
        poll(lambda: all(client.node_for(k).port == dst for k in keys), what="map to show the moved slots")

        # MOVED patched the map first; the refresh still announces the move (diffed against the
        # last refreshed map, not the patched one)
        def announced():
            got = {s for e in moves.of(SlotsMoved, lambda e: e.source == name(c, src) and e.target == name(c, dst))
                   for a, b in e.ranges for s in range(a, b + 1)}
            return got == set(tags)

        poll(announced, what="slots_moved for the slots MOVED already pointed at")
    finally:
        client.close()


# ---------------------------------------------------------------- snapshots


def test_topology_snapshot_is_frozen_serialisable_and_stable(cluster):
    # no background pings: two snapshots must not differ by a latency sample or pool counter
    client = client_for(cluster, health_interval=3600.0)
    try:
        client.connect()
        client.get("events:snapshot")
        a = client.topology()
        b = client.topology()
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.version = 99
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.shards[0].primary.port = 1
        # a new attribute: slots forbid it (CPython 3.11's frozen+slots __setattr__ raises TypeError
        # for non-field names, later versions FrozenInstanceError); either way nothing is added
        with pytest.raises((AttributeError, TypeError)):
            a.extra = 1
        assert not hasattr(a, "extra")
        assert isinstance(a.shards, tuple) and isinstance(a.shards[0].replicas, tuple)

        d = json.loads(json.dumps(a.as_dict()))
        assert d["covered_slots"] == 16384
        assert len(d["shards"]) == 3
        assert {n["name"] for s in d["shards"] for n in [s["primary"], *s["replicas"]]} == {
            f"{cluster.host}:{p}" for p in cluster.ports
        }
        assert a.shards == b.shards
        assert {n.name for n in a.nodes} == {f"{cluster.host}:{p}" for p in cluster.ports}
    finally:
        client.close()
