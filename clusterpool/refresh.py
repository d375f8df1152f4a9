"""Keeps the slot map fresh: at start, periodically, fast while a node is failing, and soon after MOVED.

How this works: one background thread waits for a request (or the interval),
then asks a small sample of nodes (`sample_size`, in parallel, each with the
refresh timeout) for their view. `agreement.decide` merges the views; when they
disagree on who is a member it names the nodes whose answer it needs, and those
are asked in a second round, at most `max_views` in all, so the cheap periodic
check costs `sample_size` round trips on a cluster of any size. Requests that
arrive while a refresh runs, or within `min_gap` after one, collapse into one
refresh, so a burst of MOVED replies costs a bounded number of refreshes.

While the map has slots without a primary, or a primary is failing, the thread
polls every `fast_interval` (for up to `fast_window` seconds of such trouble,
then once a second), asking that shard's replicas first: the promoted one is
the first to know. Commands waiting to retry wake as soon as a new map is in
use (core.adopt notifies them). `refresh_now()` is the synchronous,
single-flight form used at start and when a slot has no owner.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .agreement import View, decide
from .slots import SLOT_COUNT
from .topology import Topology

log = logging.getLogger("clusterpool.refresh")

Fetch = Callable[[str], View]


@dataclass(frozen=True, slots=True)
class Candidates:
    """Whom a refresh may ask: `first` before the rest (a failing shard's replicas), `known`
    (the map's usable nodes), `startup` (last resort), `suspects` (failing now: not asked)."""

    first: tuple[str, ...] = ()
    known: tuple[str, ...] = ()
    startup: tuple[str, ...] = ()
    suspects: frozenset[str] = frozenset()
    urgent: bool = False  # the map has a hole or a failing primary: poll fast


def candidates(topology: Topology | None, suspects: frozenset[str], startup: tuple[str, ...]) -> Candidates:
    """Whom a refresh asks (pure): a failing shard's replicas first, and whether to poll fast.
    `suspects`: nodes failing now (failures counted or breaker open)."""
    if topology is None:
        return Candidates(startup=startup)
    first: list[str] = []
    for shard in topology.shards:
        if shard.primary is None or shard.primary.name in suspects:
            first.extend(r.name for r in shard.replicas if r.usable)
    urgent = bool(first) or topology.covered < SLOT_COUNT or any(p.name in suspects for p in topology.primaries)
    known = tuple(n.name for n in topology.nodes if n.usable)
    return Candidates(tuple(first), known, startup, suspects, urgent)


def sample(cand: Candidates, size: int) -> tuple[str, ...]:
    """Up to `size` nodes: the urgent ones first, then a random pick of the rest
    (spreading CLUSTER SHARDS load over the cluster), skipping suspects."""
    first = [n for n in cand.first if n not in cand.suspects]
    rest = [n for n in cand.known if n not in cand.suspects and n not in first]
    random.shuffle(rest)
    picked = (first + rest)[: max(size, len(first))]
    if not picked:  # nothing healthy known: try the suspects, then the startup nodes
        picked = [n for n in cand.known if n in cand.suspects][:size]
    if not picked:
        picked = list(cand.startup[:1])
    return tuple(picked)


class Refresher:
    def __init__(
        self,
        fetch: Fetch,
        candidates: Callable[[], Candidates],
        current: Callable[[], Topology | None],
        adopt: Callable[[Topology], None],
        on_failure: Callable[[str, tuple[str, ...]], None],
        interval: float = 30.0,
        min_gap: float = 0.2,
        fast_interval: float = 0.1,
        fast_window: float = 30.0,
        sample_size: int = 3,
        max_views: int = 16,
    ) -> None:
        self._fetch = fetch
        self._candidates = candidates
        self._current = current
        self._adopt = adopt
        self._on_failure = on_failure
        self.interval = interval
        self.min_gap = min_gap
        self.fast_interval = fast_interval
        self.fast_window = fast_window
        self.sample_size = sample_size
        self.max_views = max_views
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # single flight
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._last = 0.0
        self._urgent_since: float | None = None
        self.count = 0  # refreshes performed
        self.requests = 0
        self.last_decision = ""  # why the last refresh adopted or kept a map (for stats and logs)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="clusterpool-refresh", daemon=True)
            self._thread.start()

    def after_fork(self) -> None:
        """In a forked child: the parent's thread, lock and workers do not exist here."""
        self._thread = None
        self._pool = None
        self._lock = threading.Lock()

    def request(self) -> None:
        """Ask for a refresh soon; never blocks, never refreshes on the caller's thread."""
        self.requests += 1
        self._wake.set()

    def _next_wait(self) -> float:
        if not self._candidates().urgent:
            self._urgent_since = None
            return self.interval
        now = time.monotonic()
        if self._urgent_since is None:
            self._urgent_since = now
        fast = now - self._urgent_since < self.fast_window
        return min(self.interval, self.fast_interval if fast else 1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self._next_wait()
            except Exception as e:  # never let the thread die
                log.debug("refresh scheduling failed: %s", e)
                wait = self.interval
            woke = self._wake.wait(wait)
            if self._stop.is_set():
                return
            gap = self._last + self.min_gap - time.monotonic()
            if woke and gap > 0 and self._stop.wait(gap):
                return
            self._wake.clear()
            try:
                self.refresh_now()
            except Exception as e:  # never let the thread die
                log.debug("background refresh failed: %s", e)

    def refresh_now(self) -> Topology | None:
        """Refresh on this thread; concurrent callers wait for the one in progress."""
        if not self._lock.acquire(blocking=False):
            with self._lock:  # someone else is refreshing: wait for that one
                return self._current()
        try:
            return self._refresh()
        finally:
            self._last = time.monotonic()
            self._lock.release()

    def _refresh(self) -> Topology | None:
        self.count += 1
        cand = self._candidates()
        current = self._current()
        suspects = cand.suspects
        asked = self._sample(cand)
        views, silent, errors = self._ask(asked)
        decision = decide(current, views, silent=silent | suspects, asked=asked)
        if decision.ask:
            more = [n for n in decision.ask if n not in suspects][: max(self.max_views - len(asked), 0)]
            v2, s2, e2 = self._ask(more)
            views, silent, errors = views + v2, silent | s2, errors + e2
            asked = asked + tuple(more)
            decision = decide(current, views, silent=silent | suspects, asked=asked, final=True)
        if not views:  # every known node is gone: the startup addresses, resolved again
            for name in [s for s in cand.startup if s not in asked] + list(suspects):
                v3, _, e3 = self._ask((name,))
                errors += e3
                if v3:
                    views = v3
                    decision = decide(current, views, final=True)
                    break
        self.last_decision = decision.reason
        if decision.topology is None:
            if not views:
                self._on_failure("no node answered CLUSTER SHARDS", tuple(errors))
            return current
        self._adopt(decision.topology)
        return decision.topology

    def _sample(self, cand: Candidates) -> tuple[str, ...]:
        return sample(cand, self.sample_size)

    def _ask(self, names: Sequence[str]) -> tuple[list[View], frozenset[str], list[str]]:
        """Every named node's view, asked in parallel: (views, nodes that failed, their errors)."""
        if not names:
            return [], frozenset(), []
        if len(names) == 1 or self._stop.is_set():  # no new workers once closing
            results = [self._try(n) for n in names]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="clusterpool-refresh-ask")
            results = list(self._pool.map(self._try, names))
        views = [r for r in results if isinstance(r, View)]
        failed = [(n, r) for n, r in zip(names, results) if not isinstance(r, View)]
        return views, frozenset(n for n, _ in failed), [f"{n}: {e}" for n, e in failed]

    def _try(self, name: str) -> View | BaseException:
        try:
            return self._fetch(name)
        except Exception as e:
            return e

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(timeout)
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
