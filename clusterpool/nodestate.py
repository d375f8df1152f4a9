"""A node as the client experiences it: its pool, health, circuit breaker and latency."""

from __future__ import annotations

import time
from enum import Enum
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from .replication import Lag

P = TypeVar("P")  # the node's connections: the sync ConnectionPool, or the asyncio NodeConnections


class Health(str, Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # answering, but slowly or with some errors
    UNHEALTHY = "unhealthy"  # breaker open: not tried until the cool-down ends


class NodeState(Generic[P]):
    """Mutable per-node state; only this object changes when the node misbehaves.

    The breaker opens after `failure_threshold` consecutive connection failures;
    while open the node is skipped; after `cooldown` one probe (the next command
    or the health check) decides whether it closes again.
    """

    def __init__(
        self,
        name: str,
        pool: P,
        failure_threshold: int = 3,
        cooldown: float = 2.0,
        slow_threshold: float = 0.05,
    ) -> None:
        self.name = name
        self.pool = pool
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.slow_threshold = slow_threshold
        self.failures = 0
        self.open_until = 0.0
        self.latency: float | None = None  # EWMA of PING round trips, seconds
        self.loading = False
        self.health = Health.HEALTHY
        self.readonly = False  # replica connections send READONLY
        self.stale = False  # replica whose link to its primary is down
        self.zone: str | None = None  # availability zone (Valkey 8+), once `zone_known`
        self.zone_known = False  # asked INFO server once: the zone does not change while it runs
        self.lag: Lag | None = None  # a replica's lag, from its primary's INFO replication

    def record_success(self) -> Health | None:
        """Returns the new health when it changed."""
        self.failures = 0
        self.open_until = 0.0
        self.loading = False
        return self._set(self._measured())

    def record_latency(self, seconds: float) -> Health | None:
        self.latency = seconds if self.latency is None else 0.7 * self.latency + 0.3 * seconds
        if self.open_until:
            return None
        return self._set(self._measured())

    def record_failure(self) -> Health | None:
        self.failures += 1
        if self.failures >= self.failure_threshold:
            self.open_until = time.monotonic() + self.cooldown
            return self._set(Health.UNHEALTHY)
        return self._set(Health.DEGRADED)

    def available(self, now: float | None = None) -> bool:
        """False while the breaker is open (until the cool-down passes)."""
        return not self.open_until or (now or time.monotonic()) >= self.open_until

    def _measured(self) -> Health:
        if self.latency is not None and self.latency > self.slow_threshold:
            return Health.DEGRADED
        return Health.HEALTHY

    def _set(self, health: Health) -> Health | None:
        if health is self.health:
            return None
        self.health = health
        return health

    def __repr__(self) -> str:
        lat = "-" if self.latency is None else f"{self.latency * 1000:.2f}ms"
        return f"<NodeState {self.name} {self.health.value} failures={self.failures} latency={lat}>"
