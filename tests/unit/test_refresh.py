"""clusterpool.refresh.Refresher driving agreement.decide, with views from a fake fetch (no server):
how many nodes a refresh asks, whom it asks first, and what it adopts."""

from __future__ import annotations

import threading

from clusterpool.agreement import View
from clusterpool.refresh import Refresher
from clusterpool.refreshsteps import Candidates
from clusterpool.topology import PRIMARY, Node, Shard, Topology

H = "h"


def big_cluster(n):
    """n primaries with equal slot ranges."""
    step = 16384 // n
    shards = []
    for i in range(n):
        end = 16383 if i == n - 1 else (i + 1) * step - 1
        shards.append(Shard(((i * step, end),), Node(H, 1000 + i, PRIMARY, f"id{i}"), (), f"id{i}"))
    return Topology(tuple(shards))


class Fake:
    """A cluster of views: fetch(name) answers with `views[name]`, or raises for `down`."""

    def __init__(self, current, answers, down=()):
        self.current = current
        self.answers = answers
        self.down = set(down)
        self.asked = []
        self.adopted = []
        self.failures = []
        self._lock = threading.Lock()

    def fetch(self, name):
        with self._lock:
            self.asked.append(name)
        if name in self.down:
            raise ConnectionError(f"{name} refused")
        return View(name, self.answers[name])

    def refresher(self, cand, **kw):
        return Refresher(self.fetch, lambda: cand, lambda: self.current, self.adopted.append,
                         lambda e, t: self.failures.append((e, t)), **kw)


def test_the_periodic_check_of_a_large_agreeing_cluster_asks_only_the_sample():
    t = big_cluster(100)
    names = tuple(t.by_name)
    fake = Fake(t, {n: t for n in names})
    r = fake.refresher(Candidates(known=names), sample_size=3)
    r.refresh_now()
    r.close()
    assert len(fake.asked) == 3 and not fake.adopted


def test_replicas_of_a_failing_shard_are_asked_first():
    t = big_cluster(10)
    names = tuple(t.by_name)
    fake = Fake(t, {n: t for n in names})
    first = (names[7], names[8])
    r = fake.refresher(Candidates(first=first, known=names), sample_size=3)
    r.refresh_now()
    r.close()
    assert set(first) <= set(fake.asked) and len(fake.asked) == 3


def test_suspects_are_not_asked():
    t = big_cluster(4)
    names = tuple(t.by_name)
    fake = Fake(t, {n: t for n in names})
    r = fake.refresher(Candidates(known=names, suspects=frozenset(names[:3])), sample_size=3)
    r.refresh_now()
    r.close()
    assert fake.asked == [names[3]]


def test_a_view_missing_a_member_leads_to_asking_every_member_before_dropping_it():
    t = big_cluster(4)
    names = tuple(t.by_name)
    without = Topology(t.shards[:3] + (Shard(t.shards[3].slots, t.shards[0].primary, (), "id0"),))
    answers = {n: t for n in names}
    answers[names[0]] = without  # one node forgot node 3 and believes it owns node 3's slots
    fake = Fake(t, answers)
    r = fake.refresher(Candidates(first=(names[0],), known=names), sample_size=1)
    r.refresh_now()
    r.close()
    assert set(fake.asked) == set(names)
    assert not fake.adopted  # the others still list node 3 and its slots; node 0's epoch is no higher


def test_a_burst_of_requests_collapses_into_few_refreshes():
    t = big_cluster(3)
    names = tuple(t.by_name)
    fake = Fake(t, {n: t for n in names})
    r = fake.refresher(Candidates(known=names), min_gap=0.2, interval=60)
    r.start()
    for _ in range(1000):
        r.request()
    r.close()
    assert r.requests == 1000 and r.count <= 2


def test_startup_addresses_are_the_last_resort():
    t = big_cluster(3)
    names = tuple(t.by_name)
    fake = Fake(t, {"s:1": t}, down=names)
    r = fake.refresher(Candidates(known=names, startup=("s:1",)), sample_size=3)
    r.refresh_now()
    r.close()
    assert fake.asked[-1] == "s:1" and not fake.failures


def test_no_answer_at_all_is_reported():
    t = big_cluster(3)
    names = tuple(t.by_name)
    fake = Fake(t, {}, down=(*names, "s:1"))
    r = fake.refresher(Candidates(known=names, startup=("s:1",)), sample_size=3)
    r.refresh_now()
    r.close()
    assert len(fake.failures) == 1 and "s:1" in " ".join(fake.failures[0][1])


def six_node_refresher():
    t = big_cluster(6)
    names = tuple(t.by_name)
    return Fake(t, {n: t for n in names}).refresher(Candidates(known=names), sample_size=6)


def new_ask_threads(before: set) -> list:
    """Refresh workers started since `before` (a client another test left open has its own)."""
    return [th for th in set(threading.enumerate()) - before if th.name.startswith("clusterpool-refresh-ask")]


def test_close_leaves_no_worker_thread():
    before = set(threading.enumerate())
    r = six_node_refresher()
    r.refresh_now()
    r.close()
    assert not new_ask_threads(before)


def test_a_refresh_still_running_after_close_makes_no_worker_thread():
    before = set(threading.enumerate())
    r = six_node_refresher()
    r.close()
    r.refresh_now()  # as a refresh that began before close() would go on
    assert not new_ask_threads(before)
