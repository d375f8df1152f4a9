"""Constructor input: startup node forms, each option's type, and the RedisCluster keywords we
accept but do not need.

How this works: `check_types(options)` looks at each keyword's value before any is used,
so `pool_timeout="x"` or `port="abc"` is a ConfigurationError naming the option in the
constructor (both clients build their Config through here), not a TypeError deep in a
pool later; `unknown_options()` words the error for misspelt names, with the near match.
Ranges (> 0, >= 1) are Config.check's job; this module only checks kinds.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any

from redis.connection import parse_url

from . import errors

# RedisCluster keywords accepted for compatibility and ignored (our router replaces them).
IGNORED_COMPAT = frozenset(
    {"require_full_coverage", "reinitialize_steps", "dynamic_startup_nodes", "cluster_error_retry_attempts",
     "connection_pool_class", "url", "lib_name", "lib_version", "cache", "cache_config", "event_dispatcher",
     "policy_resolver", "maint_notifications_config", "oss_cluster_maint_notifications_handler",
     "retry_on_timeout", "retry_on_error", "single_connection_client", "connection_pool"}
)


# Option names by the kind of value they take (None is always allowed: a default or "no limit").
SECONDS = frozenset(
    {"pool_timeout", "retry_timeout", "max_idle_time", "validate_after", "refresh_interval",
     "refresh_timeout", "health_interval", "breaker_cooldown", "degraded_latency",
     "socket_timeout", "socket_connect_timeout", "health_check_interval"}
)
COUNTS = frozenset({"max_redirections", "max_connections", "min_idle", "failure_threshold", "socket_read_size"})
FLAGS = frozenset({"ssl", "retry_unknown_outcome", "replica_fallback", "validate_on_return", "track_latency",
                   "read_from_replicas"})
CALLABLES = frozenset({"address_map", "address_remap", "command_hook", "redis_connect_func"})
# RedisCluster keywords rewritten into ours (config._compat), and db (only 0 is allowed)
COMPAT_SPELLINGS = frozenset({"read_from_replicas", "load_balancing_strategy", "address_remap", "db"})


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
    from redis.retry import Retry

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


def node_list(startup_nodes: Iterable[Any] | None, host: str | None, port: Any) -> list[tuple[str, int]]:
    """(host, port) pairs from every startup node form RedisCluster accepts, `host`/`port` first."""
    out: list[tuple[str, int]] = []
    for n in startup_nodes or ():
        if isinstance(n, str):
            h, _, ps = n.rpartition(":")
            if not h or not ps.isdigit():
                raise errors.ConfigurationError(f"startup node {n!r} is not 'host:port'")
            out.append((h, port_number(ps, f"port of startup node {n!r}")))
        elif isinstance(n, dict):
            out.append((str(n["host"]), port_number(n.get("port", 6379), f"port of startup node {n!r}")))
        elif isinstance(n, tuple | list) and len(n) == 2:
            out.append((str(n[0]), port_number(n[1], f"port of startup node {n!r}")))
        elif hasattr(n, "host") and hasattr(n, "port"):
            out.append((str(n.host), port_number(n.port, f"port of startup node {n.host}")))
        else:
            raise errors.ConfigurationError(
                f"startup node {n!r} not understood: use (host, port), 'host:port' or ClusterNode"
            )
    if host is not None:
        if not isinstance(host, str):
            raise errors.ConfigurationError(f"host must be a string, got {host!r}")
        out.insert(0, (host, port_number(port, "port")))
    return out


def redact_url(url: str) -> str:
    """The URL with any password replaced by '***', for error messages and logs."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def url_arguments(url: str, overrides: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """(host, port, options) from a `redis://` or `rediss://` URL for a cluster client's constructor;
    `overrides` (the caller's keywords) win over the URL. Both clients' `from_url` use it."""
    try:
        parsed = parse_url(url)
    except ValueError as e:
        raise errors.ConfigurationError(f"bad cluster URL {redact_url(url)!r}: {e}") from None
    if parsed.pop("path", None):
        raise errors.ConfigurationError("unix sockets cannot reach a cluster: use redis:// or rediss://")
    conn_class = parsed.pop("connection_class", None)
    if conn_class is not None and "SSL" in getattr(conn_class, "__name__", ""):
        parsed["ssl"] = True
    host = parsed.pop("host", "localhost")
    port = parsed.pop("port", 6379)
    parsed.update(overrides)
    return host, port, parsed
