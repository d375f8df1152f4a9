"""Pool sizing by Little's law (pure arithmetic, no network)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PoolSize:
    """A recommendation: connections in flight overall and `max_connections` per node."""

    rate: float
    latency_ms: float
    headroom: float
    nodes: int
    concurrency: float  # rate x latency, before headroom
    total: int
    per_node: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def recommend_pool_size(rate: float, latency_ms: float, headroom: float = 1.2, nodes: int = 3) -> PoolSize:
    """Recommend `max_connections` from a request rate and a per-request latency.

    Little's law: the mean number of requests in flight equals the arrival
    rate times the time each spends in the system, so a client doing `rate`
    commands per second that each hold a connection for `latency_ms`
    milliseconds keeps `rate * latency_ms / 1000` connections busy on
    average. That is multiplied by `headroom` (>= 1, for bursts) and rounded
    up to give the total; `per_node` is the total spread evenly over `nodes`
    primaries (keys hash uniformly over slots), rounded up. Example: 10,000
    commands/s at 2 ms with headroom 1.2 -> ceil(10000 * 0.002 * 1.2) = 24
    in total, 8 per node on 3 primaries.

    Raises ValueError for a non-positive rate or latency, headroom below 1 or
    nodes below 1.
    """
    if not rate > 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate}")
    if not latency_ms > 0:
        raise ValueError(f"latency must be > 0 ms, got {latency_ms}")
    if not headroom >= 1:
        raise ValueError(f"headroom must be >= 1, got {headroom}")
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    concurrency = rate * latency_ms / 1000.0
    # round away float noise first (e.g. 1000 x 0.3 x 1.1 is 330.00000000000006 in binary)
    total = max(1, math.ceil(round(concurrency * headroom, 9)))
    per_node = max(1, math.ceil(total / nodes))
    return PoolSize(rate, latency_ms, headroom, nodes, concurrency, total, per_node)
