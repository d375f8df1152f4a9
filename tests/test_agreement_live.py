"""Refresh by agreement against a real cluster: join and forget rounds while the client refreshes
many times a second. Each real change gives exactly one node_added and one node_removed, and a
member never vanishes from `client.nodes()` while gossip spreads."""

from __future__ import annotations

import threading

from clusterpool import ClusterClient, NodeAdded, NodeRemoved
from waiting import poll

ROUNDS = 3
WAIT = 30.0


class MembershipWatch:
    """Samples `client.nodes()` on a thread and keeps the node events, to check afterwards that
    nothing vanished and that each node was added and removed once."""

    def __init__(self, client: ClusterClient):
        self.client = client
        self.events: list[NodeAdded | NodeRemoved] = []
        self.vanished: list[str] = []
        self.expected: set[str] = set()  # names that must stay listed right now
        self.samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        client.on("node_added", self._record)
        client.on("node_removed", self._record)
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _record(self, e):
        with self._lock:
            self.events.append(e)

    def _sample(self):
        while not self._stop.wait(0.005):
            listed = {n.name for n in self.client.nodes()}
            with self._lock:
                missing = self.expected - listed
                self.vanished.extend(sorted(missing))
                self.samples += 1

    def expect(self, name: str, present: bool) -> None:
        with self._lock:
            (self.expected.add if present else self.expected.discard)(name)

    def mark(self) -> int:
        with self._lock:
            return len(self.events)

    def of(self, name: str, since: int = 0) -> list[str]:
        """The node events for `name` (the harness may reuse a port) since `mark()` was `since`."""
        with self._lock:
            return [e.name for e in self.events[since:] if e.node.name == name]

    def __enter__(self):
        self.expected = {n.name for n in self.client.nodes()}
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def settle(client: ClusterClient, refreshes: int = 20) -> None:
    """Wait until the client has refreshed `refreshes` more times."""
    start = client.stats().refreshes
    poll(lambda: client.stats().refreshes >= start + refreshes, WAIT, what=f"{refreshes} more refreshes")


def join_and_forget(c, client: ClusterClient, watch: MembershipWatch, replica_of: int | None) -> None:
    """One round: a node joins (as an empty primary or a replica), then is forgotten."""
    since = watch.mark()
    port = c.add_node(replica_of=replica_of)
    new = f"{c.host}:{port}"
    poll(lambda: watch.of(new, since) == ["node_added"], WAIT, what=f"node_added for {new}")
    watch.expect(new, True)
    settle(client)  # gossip has settled: many more refreshes, and nothing may change
    assert watch.of(new, since) == ["node_added"]

    watch.expect(new, False)
    c.remove_node(port)
    poll(lambda: watch.of(new, since) == ["node_added", "node_removed"], WAIT, what=f"node_removed for {new}")
    settle(client)
    assert watch.of(new, since) == ["node_added", "node_removed"]
    assert new not in {n.name for n in client.nodes()}


def test_join_and_forget_rounds_give_one_event_each_and_nobody_vanishes(fresh_cluster):
    c = fresh_cluster
    with ClusterClient(startup_nodes=c.startup_nodes, refresh_interval=0.05) as client:
        client.connect()
        with MembershipWatch(client) as watch:
            for i in range(ROUNDS):
                join_and_forget(c, client, watch, replica_of=c.primaries()[0] if i % 2 else None)
            assert watch.samples > 100
            assert watch.vanished == []
        client.set("agreement:after", "ok")
        assert client.get("agreement:after") == b"ok"


def test_a_slot_one_node_still_credits_to_its_old_owner_stays_unserved(fresh_cluster):
    """After DELSLOTS on every node, one node names the old owner again (as when it re-learns it
    from gossip mid-way): the owner's own word wins, refresh after refresh."""
    cluster = fresh_cluster
    with ClusterClient(startup_nodes=cluster.startup_nodes) as client:
        key = "stale-claim:{x}"
        slot = client.slot(key)
        owner = client.node_for(key)
        for port in cluster.ports:
            r = cluster.client(port)
            r.execute_command("CLUSTER", "DELSLOTS", slot)
            r.close()
        stale = next(p for p in cluster.ports if p != owner.port)
        r = cluster.client(stale)
        r.execute_command("CLUSTER", "SETSLOT", slot, "NODE", cluster.node_id(owner.port))
        r.close()
        for _ in range(20):
            assert client.refresh().slot_table[slot] is None
