"""Hedged replica reads, the decisions (pure: no I/O, no clock; `now` is passed in).

How this works: a read routed by a read strategy is sent to its node; when no reply came
within `HedgePolicy.delay_for(...)` the driver asks the `Hedger` whether one more read is
within the budget (`try_hedge`) and which node takes it (`second_node`: another usable node
of the same shard, never the first one, never one that is down or lagging); it sends the
same command there and takes whichever reply comes first. Writes, blocking commands,
pipelines and transactions are never hedged (`hedgeable`). The sync driver is
clusterpool/hedged.py, the asyncio one clusterpool/asyncio/hedged.py.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from . import errors
from .readfrom import NodeStates
from .topology import Node, Shard

# how often (in recorded samples) a node's percentile delay is computed again: sorting the
# window on every read would cost more than the read
RECOMPUTE_EVERY = 64
BUCKETS = 10  # the budget's window is kept as this many slices


def _seconds(name: str, value: object, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise errors.ConfigurationError(
            f"HedgePolicy {name} must be a finite number of seconds {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgePolicy:
    """When a read is hedged and how many extra reads may be sent.

    `delay`: a fixed wait (seconds) before the hedge; None (the default) waits for the
    `percentile` of the recent read latency of the read's node or of another node of its
    shard, whichever is lowest (see Hedger), kept within [`floor`, `ceiling`] (`ceiling`
    until a node has `min_samples` replies timed). `budget`: hedges are at most this
    fraction of the hedgeable reads of the last `window` seconds, plus `burst` (so a client
    that reads little can still hedge a few). `to_primary`: with no other usable replica,
    the hedge may go to the shard's primary.
    """

    delay: float | None = None
    percentile: float = 0.95
    floor: float = 0.0005
    ceiling: float = 0.01
    min_samples: int = 20
    samples: int = 256
    budget: float = 0.05
    window: float = 10.0
    burst: int = 10
    to_primary: bool = True

    def __post_init__(self) -> None:
        if self.delay is not None:
            _seconds("delay", self.delay)
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
            raise errors.ConfigurationError(f"HedgePolicy percentile must be in (0, 1], got {p!r}")
        floor, ceiling = _seconds("floor", self.floor), _seconds("ceiling", self.ceiling)
        if floor > ceiling:
            raise errors.ConfigurationError(f"HedgePolicy floor ({floor}) must not exceed ceiling ({ceiling})")
        for name in ("min_samples", "samples", "burst"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "burst" else 1):
                raise errors.ConfigurationError(f"HedgePolicy {name} must be an int >= "
                                                f"{0 if name == 'burst' else 1}, got {v!r}")
        if self.min_samples > self.samples:
            raise errors.ConfigurationError("HedgePolicy min_samples must not exceed samples")
        b = self.budget
        if isinstance(b, bool) or not isinstance(b, int | float) or not 0 <= b <= 1:
            raise errors.ConfigurationError(f"HedgePolicy budget must be a fraction in [0, 1], got {b!r}")
        _seconds("window", self.window, allow_zero=False)
        if not isinstance(self.to_primary, bool):
            raise errors.ConfigurationError(f"HedgePolicy to_primary must be True or False, got {self.to_primary!r}")

    def delay_for(self, recent: Sequence[float]) -> float:
        """The wait before hedging a read on a node whose recent read latencies are `recent`."""
        if self.delay is not None:
            return self.delay
        n = len(recent)
        if n < self.min_samples:
            return self.ceiling
        xs = sorted(recent)
        at = xs[min(n - 1, math.ceil(self.percentile * n) - 1)]
        return min(max(at, self.floor), self.ceiling)


def hedge_policy(value: object) -> HedgePolicy | None:
    """The `hedge=` option as a policy: None/False off, True the defaults, or a HedgePolicy."""
    if value is None or value is False:
        return None
    if value is True:
        return HedgePolicy()
    if isinstance(value, HedgePolicy):
        return value
    raise errors.ConfigurationError(f"hedge must be a clusterpool.HedgePolicy, True or None, got {value!r}")


def hedgeable(readonly: bool, flags: frozenset[str] | Sequence[str], to_primary: bool) -> bool:
    """Whether a keyed command may be hedged: read-only, not blocking, routed by a read strategy
    (a client or view that sends reads to the primary keeps read-your-writes, so no hedge)."""
    return readonly and not to_primary and "blocking" not in flags


def second_node(shard: Shard, first: str, states: NodeStates, zone: str | None = None,
                to_primary: bool = True) -> Node | None:
    """Where the hedge goes: another usable replica of `shard` (in the client's `zone` first,
    then the lowest measured latency), else the primary when `to_primary`; never `first`, and
    never a node that is down or lagging (`states.down`). None: nowhere to hedge to."""
    down, lat, zones = states.down, states.latency, states.zones
    others = [n for n in shard.readable if n.name != first and n.name not in down]
    if others:
        return min(others, key=lambda n: (zone is not None and zones.get(n.name) != zone, lat.get(n.name, 0.0)))
    p = shard.primary
    if to_primary and p is not None and p.name != first and p.name not in down:
        return p
    return None


class HedgeBudget:
    """Hedges allowed over a sliding window: at most `fraction` of the reads of the last
    `window` seconds, plus `burst`. The window is kept as BUCKETS slices of counts."""

    __slots__ = ("fraction", "burst", "_width", "_epochs", "_reads", "_hedges")

    def __init__(self, fraction: float, window: float, burst: int) -> None:
        self.fraction, self.burst = fraction, burst
        self._width = window / BUCKETS
        self._epochs = [-1] * BUCKETS
        self._reads = [0] * BUCKETS
        self._hedges = [0] * BUCKETS

    def _slot(self, now: float) -> tuple[int, int]:
        epoch = int(now / self._width)
        i = epoch % BUCKETS
        if self._epochs[i] != epoch:  # a slice from an earlier window: start it again
            self._epochs[i], self._reads[i], self._hedges[i] = epoch, 0, 0
        return i, epoch

    def read(self, now: float) -> None:
        """One hedgeable read was sent."""
        self._reads[self._slot(now)[0]] += 1

    def allow(self, now: float) -> bool:
        """Whether one more hedge fits the budget now; if so it is counted."""
        i, epoch = self._slot(now)
        reads = hedges = 0
        for e, r, h in zip(self._epochs, self._reads, self._hedges):
            if epoch - e < BUCKETS:
                reads += r
                hedges += h
        if hedges + 1 > self.fraction * reads + self.burst:
            return False
        self._hedges[i] += 1
        return True


@dataclass(frozen=True, slots=True)
class HedgeStats:
    """Hedging counters since the client started: hedgeable `reads`, hedges `sent`, hedges
    `won` (the second reply came first), hedges `suppressed` by the budget; and `held`, the
    connections now kept out of their pool until a late reply is read and dropped."""

    reads: int = 0
    sent: int = 0
    won: int = 0
    suppressed: int = 0
    held: int = 0

    @property
    def extra(self) -> float:
        """Hedges sent per hedgeable read (0.05: 5% extra reads)."""
        return self.sent / self.reads if self.reads else 0.0


class _Window:
    """One node's recent read latencies."""

    __slots__ = ("xs", "count")

    def __init__(self, size: int) -> None:
        self.xs: deque[float] = deque(maxlen=size)
        self.count = 0


class Hedger:
    """One client's hedging state: its policy, budget, counters and each node's recent latency
    (shared by the client's views). The drivers call `delay`, `read`, `try_hedge`, `timed`, `won`;
    the budget is checked under a lock (a hedge is rare); counters may lose an increment to a
    race between threads, which only makes the budget stricter.

    With a percentile policy the delay is per shard: the lowest of its nodes' percentiles
    (each computed once `min_samples` replies were timed on that node, then every RECOMPUTE_EVERY), so a node that is slow
    on every read is hedged after what its peers usually take, not after its own slowness.
    """

    def __init__(self, policy: HedgePolicy) -> None:
        self.policy = policy
        self.budget = HedgeBudget(policy.budget, policy.window, policy.burst)
        self._windows: dict[str, _Window] = {}
        self._per_node: dict[str, dict[str, float]] = {}  # shard id -> {node: its percentile delay}
        self._delays: dict[str, float] = {}  # shard id -> the delay of reads on that shard
        self._lock = threading.Lock()
        self.reads = self.sent = self.won_count = self.suppressed = 0

    def delay(self, shard: str) -> float:
        """How long a read on shard `shard` (its id) waits for its reply before it may be hedged."""
        policy = self.policy
        if policy.delay is not None:
            return policy.delay
        return self._delays.get(shard, policy.ceiling)

    def read(self, now: float) -> None:
        """A hedgeable read was sent (the budget's denominator)."""
        self.reads += 1
        self.budget.read(now)

    def timed(self, shard: str, node: str, seconds: float) -> None:
        """A reply from `node` of `shard` took `seconds` (or a reply abandoned after that long: a
        lower bound)."""
        policy = self.policy
        if policy.delay is not None:
            return
        w = self._windows.get(node)
        if w is None:
            w = self._windows.setdefault(node, _Window(policy.samples))
        w.xs.append(seconds)
        w.count += 1
        if w.count % RECOMPUTE_EVERY == 0 and w.count >= policy.min_samples or w.count == policy.min_samples:
            delay = policy.delay_for(tuple(w.xs))
            with self._lock:  # threads may recompute two nodes of one shard at once
                per = self._per_node.setdefault(shard, {})
                per[node] = delay
                self._delays[shard] = min(per.values())

    def try_hedge(self, now: float) -> bool:
        """Whether to send a hedge now (counted as sent if so, as suppressed if not)."""
        with self._lock:
            ok = self.budget.allow(now)
        if ok:
            self.sent += 1
        else:
            self.suppressed += 1
        return ok

    def won(self) -> None:
        """The hedge's reply came first."""
        self.won_count += 1

    def stats(self) -> HedgeStats:
        return HedgeStats(self.reads, self.sent, self.won_count, self.suppressed)
