"""Per-command hooks: tracing and latency percentiles, paid for only when switched on.

A hook is `fn(node, command, seconds, error)` called after every command the
router runs (each redirection hop and retry counts as one). With no hook the
command path is untouched: the client swaps in its timed runner only when a
hook is given.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

CommandHook = Callable[[str, str, float, "BaseException | None"], None]


class LatencyRecorder:
    """Keeps the last `window` command latencies per node; `percentiles()` summarises them."""

    def __init__(self, window: int = 2048) -> None:
        self.window = window
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.errors: dict[str, int] = {}

    def __call__(self, node: str, command: str, seconds: float, error: BaseException | None) -> None:
        d = self._samples.get(node)
        if d is None:
            with self._lock:
                d = self._samples.setdefault(node, deque(maxlen=self.window))
        d.append(seconds)  # deque.append is atomic
        if error is not None:
            self.errors[node] = self.errors.get(node, 0) + 1

    def samples(self) -> dict[str, list[float]]:
        """A copy of each node's recent latencies (seconds)."""
        return {node: list(d) for node, d in list(self._samples.items())}

    def percentiles(self) -> dict[str, dict[str, Any]]:
        """{node: {"count", "p50_ms", "p90_ms", "p99_ms", "max_ms"}} over the window."""
        out: dict[str, dict[str, Any]] = {}
        for node, d in list(self._samples.items()):
            xs = sorted(d)
            if not xs:
                continue
            n = len(xs)

            def q(p: float, xs: list[float] = xs, n: int = n) -> float:
                return round(xs[min(n - 1, int(p * n))] * 1000, 3)

            out[node] = {"count": n, "p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99),
                         "max_ms": round(xs[-1] * 1000, 3)}
        return out


def combine(*hooks: CommandHook | None) -> CommandHook | None:
    """One hook calling each given hook; an exception in a hook never reaches the command."""
    active = [h for h in hooks if h is not None]
    if not active:
        return None
    if len(active) == 1 and isinstance(active[0], LatencyRecorder):
        return active[0]

    def hook(node: str, command: str, seconds: float, error: BaseException | None) -> None:
        for h in active:
            try:
                h(node, command, seconds, error)
            except Exception:  # a tracing bug must not fail the user's command
                pass

    return hook
