"""The kind of value each client option takes, checked before any is used (pure).

How this works: `check_types(options)` looks at each keyword's value, so `pool_timeout="x"`
or `port="abc"` is a ConfigurationError naming the option in the constructor (both clients
build their Config through config.Config.build), not a TypeError deep in a pool later;
`unknown_options()` words the error for misspelt names, with the near match (difflib);
`port_number()` reads a port as redis-py does (an int, or a string of digits). Ranges
(> 0, >= 1) are Config.check's job; this module only checks kinds.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any

from redis.retry import Retry

from . import errors

# Option names by the kind of value they take (None is always allowed: a default or "no limit").
SECONDS = frozenset(
    {"pool_timeout", "retry_timeout", "max_idle_time", "validate_after", "refresh_interval",
     "refresh_timeout", "refresh_min_gap", "health_interval",
     "breaker_cooldown", "degraded_latency",
     "socket_timeout", "socket_connect_timeout", "health_check_interval"}
)
COUNTS = frozenset({"max_redirections", "max_connections", "min_idle", "failure_threshold", "socket_read_size"})
FLAGS = frozenset({"ssl", "retry_unknown_outcome", "replica_fallback", "validate_on_return", "track_latency",
                   "read_from_replicas"})
CALLABLES = frozenset({"address_map", "address_remap", "command_hook", "redis_connect_func"})
# RedisCluster keywords rewritten into ours (config._compat), and db (only 0 is allowed)
COMPAT_SPELLINGS = frozenset({"read_from_replicas", "load_balancing_strategy", "address_remap",
                              "topology_refresh_min_interval", "db", "cache_config"})


def _is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _kind_error(name: str, value: Any) -> str | None:
    """What is wrong with `value` for option `name`, or None when its kind is right."""
    if value is None:
        return None
    if name in SECONDS and not _is_number(value):
        return "a number of seconds"
    if name in COUNTS and not (isinstance(value, int) and not isinstance(value, bool)):
        return "an integer"
    if name in FLAGS and not isinstance(value, bool | int):
        return "True or False"
    if name in CALLABLES and not callable(value):
        return "a callable"
    if name == "retry" and not _is_retry(value):
        return "a redis.retry.Retry"
    return None


def _is_retry(value: Any) -> bool:
    return isinstance(value, Retry)


def check_types(options: Mapping[str, Any]) -> None:
    """ConfigurationError for the first option whose value is of the wrong kind (in name order)."""
    for name in sorted(options):
        want = _kind_error(name, options[name])
        if want is not None:
            raise errors.ConfigurationError(f"{name} must be {want}, got {options[name]!r}")


def unknown_options(unknown: Iterable[str], known: Iterable[str], client: str = "ClusterClient") -> str:
    """The error message for misspelt option names, suggesting the nearest known name for each."""
    known = sorted(set(known))
    parts = []
    for name in sorted(unknown):
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        parts.append(f"{name} (did you mean {near[0]}?)" if near else name)
    return (f"unknown option(s) {', '.join(parts)} for {client}; "
            "see clusterpool.Config and the README's option table")


def port_number(value: Any, what: str) -> int:
    """A TCP port from an int or a string of digits; ConfigurationError naming `what` otherwise."""
    digits = isinstance(value, str) and value.strip().isdigit()
    if not digits and (isinstance(value, bool) or not isinstance(value, int)):
        raise errors.ConfigurationError(f"{what} must be an integer 1-65535, got {value!r}")
    port = int(value)
    if not 0 < port < 65536:
        raise errors.ConfigurationError(f"{what} must be 1-65535, got {port}")
    return port
