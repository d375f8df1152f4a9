"""Keeps the slot map fresh: at start, periodically, and soon after MOVED or a node failure.

How this works: one background thread waits for a request (or the periodic
interval), then asks nodes for CLUSTER SHARDS in random order until one
answers, with a short timeout of its own. Requests that arrive while a refresh
runs, or within `min_gap` after one, collapse into one refresh, so a burst of
MOVED replies costs a bounded number of refreshes. `refresh_now()` is the
synchronous, single-flight form used at start and when routes are gone.
A new map is adopted only if it is not clearly worse than the current one
(fewer covered slots), unless a second node confirms it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence

from .topology import Topology

log = logging.getLogger("clusterpool.refresh")

Fetch = Callable[[str], Topology]


def choose(current: Topology | None, answers: Sequence[Topology]) -> Topology | None:
    """The map to adopt from the nodes' answers, or None to keep the current one.

    A node mid-failover or cut off may report a partial or stale map: an answer
    covering fewer slots than the current map is adopted only when two nodes
    agree on it.
    """
    if not answers:
        return None
    best = max(answers, key=lambda t: t.covered)
    if current is None or best.covered >= current.covered:
        return best
    if len(answers) >= 2 and answers[0] == answers[1]:
        return answers[0]
    return None


class Refresher:
    def __init__(
        self,
        fetch: Fetch,
        candidates: Callable[[], tuple[list[str], list[str]]],
        current: Callable[[], Topology | None],
        adopt: Callable[[Topology], None],
        on_failure: Callable[[str, tuple[str, ...]], None],
        interval: float = 30.0,
        min_gap: float = 0.2,
    ) -> None:
        self._fetch = fetch
        self._candidates = candidates  # -> (known node names, startup node names)
        self._current = current
        self._adopt = adopt
        self._on_failure = on_failure
        self.interval = interval
        self.min_gap = min_gap
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # single flight
        self._thread: threading.Thread | None = None
        self._last = 0.0
        self.count = 0  # refreshes performed
        self.requests = 0

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="clusterpool-refresh", daemon=True)
            self._thread.start()

    def request(self) -> None:
        """Ask for a refresh soon; never blocks, never refreshes on the caller's thread."""
        self.requests += 1
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(self.interval)
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
        known, startup = self._candidates()
        known = list(known)
        random.shuffle(known)  # spread CLUSTER SHARDS load over the cluster
        current = self._current()
        answers: list[Topology] = []
        errors: list[str] = []
        for name in [*known, *[s for s in startup if s not in known]]:
            try:
                t = self._fetch(name)
            except Exception as e:
                errors.append(f"{name}: {e}")
                continue
            answers.append(t)
            if current is None or t.covered >= current.covered or len(answers) >= 2:
                break
        chosen = choose(current, answers)
        if chosen is None:
            if not answers:
                tried = tuple(errors)
                self._on_failure("no node answered CLUSTER SHARDS", tried)
            return current
        self._adopt(chosen)
        return chosen

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(timeout)
