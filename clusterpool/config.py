"""Every ClusterClient option, spelled once: a frozen `Config` built from the constructor's keywords.

How this works: `Config.build(host, port, startup_nodes, options)` sorts the keywords
into our options (the dataclass fields below, the one place they are written),
redis-py connection keywords (`connection`), and RedisCluster keywords we accept
for compatibility (mapped, or ignored when our router replaces them), and checks
them, so a bad option fails in the constructor, before anything is sent. The
client, its core and its background threads read the same frozen value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from redis.backoff import AbstractBackoff, EqualJitterBackoff
from redis.retry import Retry

from . import errors
from ._redispy import backoff_of as _backoff_of

from .optionkinds import COMPAT_SPELLINGS, check_types, unknown_options
from .options import (
    CONNECTION_KEYS,
    IGNORED_COMPAT,
    UNSUPPORTED_COMPAT,
    default_driver_info,
    node_list,
    refuse_unsupported,
)
from .cacheconfig import CacheSettings, cache_settings
from .hedging import HedgePolicy, hedge_policy
from .readfrom import PRIMARY, REPLICA, LagBound, StrategyLike, make_strategy
from .topology import AddressMap


def default_retry() -> Retry:
    """10 waits of 50 ms doubling to 1 s, each 50-100% of that: 3.8-7.6 s in all, enough to ride
    out a failover with a 2-5 s cluster-node-timeout."""
    return Retry(EqualJitterBackoff(cap=1.0, base=0.05), 10)


def backoff_of(retry: Retry) -> AbstractBackoff:
    """A Retry's backoff (redis-py has no public accessor: the seam reads it)."""
    return _backoff_of(retry)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A ClusterClient's options (see the README's option table for what each one does)."""

    startup_nodes: tuple[tuple[str, int], ...]
    connection: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # redis-py keywords
    ssl: bool = False
    address_map: AddressMap | None = None
    read_from: StrategyLike = PRIMARY
    client_az: str | None = None  # this client's availability zone, for the az_affinity strategies
    max_replica_lag: float | None = None  # seconds; replicas further behind get no reads
    max_replica_lag_bytes: int | None = None  # replication offset; likewise
    hedge: HedgePolicy | None = None  # hedged reads (hedging.py); True in the keywords: the defaults
    max_redirections: int = 16
    retry: Retry = field(default_factory=default_retry)
    retry_unknown_outcome: bool = False
    retry_timeout: float | None = None
    replica_fallback: bool = True
    max_connections: int = 50
    pool_timeout: float | None = 5.0
    min_idle: int = 0
    max_idle_time: float | None = 300.0
    validate_after: float = 1.0
    validate_on_return: bool = False
    refresh_interval: float = 30.0
    refresh_timeout: float = 1.0
    refresh_min_gap: float = 0.2  # RedisCluster's topology_refresh_min_interval (its default: 1.0)
    health_interval: float = 1.0
    failure_threshold: int = 3
    breaker_cooldown: float = 2.0
    degraded_latency: float = 0.05
    command_hook: Callable[..., Any] | None = None
    track_latency: bool = False
    cache: CacheSettings | None = None  # client-side caching (from cache= / cache_config=)

    @classmethod
    def build(cls, host: str | None, port: int, startup_nodes: Iterable[Any] | None,
              options: Mapping[str, Any]) -> Config:
        """A checked Config from ClusterClient's arguments; ConfigurationError names what is wrong."""
        opts = dict(options)
        ours = {f.name for f in fields(cls)} - {"startup_nodes", "connection"}
        known = ours | CONNECTION_KEYS | IGNORED_COMPAT | COMPAT_SPELLINGS | set(UNSUPPORTED_COMPAT)
        unknown = set(opts) - known
        if unknown:
            raise errors.ConfigurationError(unknown_options(unknown, known))
        db = opts.pop("db", 0)
        if db not in (0, "0", None):
            raise errors.ConfigurationError(f"db={db!r}: Redis Cluster only has database 0")
        check_types(opts)
        _compat(opts)
        if "hedge" in opts:
            opts["hedge"] = hedge_policy(opts["hedge"])
        conn = {k: v for k, v in opts.items() if k in CONNECTION_KEYS}
        if not {"driver_info", "lib_name", "lib_version"} & set(conn):
            conn["driver_info"] = default_driver_info()
        conn.setdefault("socket_timeout", 5.0)
        conn.setdefault("socket_connect_timeout", 2.0)
        values = {k: v for k, v in opts.items() if k in ours and (v is not None or k in _NONE_OK)}
        nodes = node_list(startup_nodes, host, port)
        if not nodes:
            raise errors.ConfigurationError("no startup nodes: pass startup_nodes=[(host, port)], host/port or a URL")
        config = cls(startup_nodes=tuple(nodes), connection=MappingProxyType(conn), **values)
        config.check()
        return config

    def check(self) -> None:
        """Raise ConfigurationError for values no client could work with."""
        if self.max_redirections < 1:
            raise errors.ConfigurationError("max_redirections must be >= 1")
        if self.retry_timeout is not None and self.retry_timeout <= 0:
            raise errors.ConfigurationError(f"retry_timeout must be > 0 seconds, got {self.retry_timeout}")
        if self.max_connections < 1:
            raise errors.ConfigurationError(f"max_connections must be >= 1, got {self.max_connections}")
        for name in ("refresh_interval", "refresh_timeout", "health_interval", "breaker_cooldown"):
            if getattr(self, name) <= 0:
                raise errors.ConfigurationError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        gap = self.refresh_min_gap
        if not isinstance(gap, int | float) or not math.isfinite(gap) or gap < 0:
            raise errors.ConfigurationError(
                f"refresh_min_gap (topology_refresh_min_interval) must be a finite number of seconds >= 0, got {gap!r}")
        if self.min_idle < 0 or self.min_idle > self.max_connections:
            raise errors.ConfigurationError(f"min_idle must be between 0 and max_connections, got {self.min_idle}")
        for name in ("pool_timeout", "max_idle_time", "validate_after", "degraded_latency"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise errors.ConfigurationError(f"{name} must be >= 0 seconds, got {value}")
        if self.failure_threshold < 1:
            raise errors.ConfigurationError(f"failure_threshold must be >= 1, got {self.failure_threshold}")
        for name in ("socket_timeout", "socket_connect_timeout"):
            value = self.connection.get(name)
            if value is not None and value <= 0:
                raise errors.ConfigurationError(f"{name} must be > 0 seconds or None, got {value}")
        self._check_reads()

    def _check_reads(self) -> None:
        """client_az, the lag bounds, and a read_from that needs the zone."""
        if self.client_az is not None and (not isinstance(self.client_az, str) or not self.client_az):
            raise errors.ConfigurationError(f"client_az must be a non-empty zone name, got {self.client_az!r}")
        lag = self.max_replica_lag
        if lag is not None and (isinstance(lag, bool) or not isinstance(lag, int | float)
                                or not math.isfinite(lag) or lag < 0):
            raise errors.ConfigurationError(f"max_replica_lag must be a number of seconds >= 0, got {lag!r}")
        lag_b = self.max_replica_lag_bytes
        if lag_b is not None and (isinstance(lag_b, bool) or not isinstance(lag_b, int) or lag_b < 0):
            raise errors.ConfigurationError(f"max_replica_lag_bytes must be an int >= 0, got {lag_b!r}")
        if self.hedge is not None and not isinstance(self.hedge, HedgePolicy):
            raise errors.ConfigurationError(f"hedge must be a clusterpool.HedgePolicy or None, got {self.hedge!r}")
        try:
            make_strategy(self.read_from, self.client_az)
        except (ValueError, TypeError) as e:
            raise errors.ConfigurationError(str(e)) from None

    @property
    def watches_replicas(self) -> bool:
        """Whether the asyncio client runs its INFO probe (asyncio/watch.py): only when this
        client reads from replicas, or is given a zone or a lag bound (the sync client's health
        thread always probes)."""
        return bool(self.client_az) or self.lag_bound.active or self.read_from != PRIMARY

    @property
    def lag_bound(self) -> LagBound:
        """max_replica_lag and max_replica_lag_bytes as the value `readfrom.lagging` takes."""
        return LagBound(self.max_replica_lag, self.max_replica_lag_bytes)


# options whose None means something (no limit, no budget, none) rather than "the default"
_NONE_OK = frozenset({"retry_timeout", "pool_timeout", "max_idle_time", "address_map", "command_hook"})


def _compat(opts: dict[str, Any]) -> None:
    """RedisCluster's spellings of our options, rewritten in place."""
    refuse_unsupported(opts)
    cache = cache_settings(opts.pop("cache", None), opts.pop("cache_config", None))
    if cache is not None:
        opts["cache"] = cache
    gap = opts.pop("topology_refresh_min_interval", None)
    if gap is not None and "refresh_min_gap" not in opts:
        opts["refresh_min_gap"] = gap
    rfr = opts.pop("read_from_replicas", False)
    lbs = opts.pop("load_balancing_strategy", None)
    if opts.get("read_from") is None:
        opts.pop("read_from", None)
        if rfr or lbs is not None:
            opts["read_from"] = REPLICA
    remap = opts.pop("address_remap", None)
    if remap is not None and opts.get("address_map") is None:
        opts["address_map"] = lambda h, p: tuple(remap((h, p)))  # RedisCluster's form: one (host, port) tuple
    if "max_connections" in opts and opts["max_connections"] is None:
        opts["max_connections"] = 2**31  # RedisCluster's "no limit"
