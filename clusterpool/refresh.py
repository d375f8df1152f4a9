"""Keeps the slot map fresh: at start, periodically, fast while a node is failing, and soon after MOVED.

How this works: one background thread waits for a request (or the interval),
then asks a small sample of nodes (`sample_size`, in parallel, each with the
refresh timeout) for their view. `agreement.decide` merges the views; when they
disagree on who is a member it names the nodes whose answer it needs, and those
are asked in a second round, at most `max_views` in all, so the cheap periodic
check costs `sample_size` round trips on a cluster of any size. That sequence is
`refreshsteps.refresh_steps` (pure, shared with the asyncio client); this module asks. Requests that
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
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from .agreement import View
from .refreshsteps import FAST_INTERVAL, FAST_WINDOW, Answers, Candidates, drive, next_wait, refresh_steps
from .topology import Topology

log = logging.getLogger("clusterpool.refresh")

Fetch = Callable[[str], View]

__all__ = ["Fetch", "Refresher"]


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
        fast_interval: float = FAST_INTERVAL,
        fast_window: float = FAST_WINDOW,
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
        self._pool_lock = threading.Lock()
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
        self._pool_lock = threading.Lock()

    def request(self) -> None:
        """Ask for a refresh soon; never blocks, never refreshes on the caller's thread."""
        self.requests += 1
        self._wake.set()

    def _next_wait(self) -> float:
        wait, self._urgent_since = next_wait(self.interval, self._candidates().urgent, self._urgent_since,
                                             time.monotonic(), self.fast_interval, self.fast_window)
        return wait

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
        current = self._current()
        steps = refresh_steps(current, self._candidates(), self.sample_size, self.max_views)
        outcome = drive(steps, self._ask)
        self.last_decision = outcome.decision.reason
        if outcome.topology is None:
            if outcome.unanswered:
                self._on_failure("no node answered CLUSTER SHARDS", outcome.answers.errors)
            return current
        self._adopt(outcome.topology)
        return outcome.topology

    def _ask(self, names: Sequence[str]) -> Answers:
        """Every named node's view, asked in parallel (threads)."""
        pool = self._workers() if len(names) > 1 else None
        try:
            results = list(pool.map(self._try, names)) if pool is not None else [self._try(n) for n in names]
        except RuntimeError:  # close() shut the workers down meanwhile: ask here instead
            results = [self._try(n) for n in names]
        return Answers.of(names, results)

    def _workers(self) -> ThreadPoolExecutor | None:
        """The worker threads (made on first use), or None once closing: checked and made under
        the lock close() takes, so no workers are made after close() shut them down."""
        with self._pool_lock:
            if self._stop.is_set():
                return None
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="clusterpool-refresh-ask")
            return self._pool

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
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
