"""Constructor input of both clients: startup node forms, URLs, the redis-py connection keywords
passed through, the identity connections announce, and RedisCluster's keywords we accept,
refuse or do not need."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from redis.driver_info import DriverInfo

from ._redispy import parse_url
from . import errors
from .optionkinds import port_number
from ._version import __version__

# RedisCluster keywords accepted for compatibility and ignored (our router replaces them).
IGNORED_COMPAT = frozenset(
    {"require_full_coverage", "reinitialize_steps", "dynamic_startup_nodes", "cluster_error_retry_attempts",
     "connection_pool_class", "url", "lib_name", "lib_version", "retry_on_timeout", "retry_on_error",
     "single_connection_client", "connection_pool"}
)

_OWN_ROUTING = ("clusterpool routes by its bundled COMMAND key specs (and COMMAND INFO for commands "
                "they lack), not by a redis-py resolver: drop the option, or pass None")
_NO_MAINT = ("maintenance notifications (RESP3 MOVING/MIGRATING pushes) are not handled by "
             "clusterpool: pass None or MaintNotificationsConfig(enabled=False)")
# RedisCluster keywords for features clusterpool does not have: accepted when they ask for nothing
# (None, or a config that turns the feature off), refused otherwise, so that no feature a user
# asked for is dropped in silence.
UNSUPPORTED_COMPAT: Mapping[str, str] = MappingProxyType({
    "policy_resolver": _OWN_ROUTING,
    "metadata_resolver": _OWN_ROUTING,
    "maint_notifications_config": _NO_MAINT,
    "oss_cluster_maint_notifications_handler": _NO_MAINT,
    "event_dispatcher": ("redis-py's event dispatcher (re-authentication events) is not wired into "
                         "clusterpool's connections: drop the option, or pass None"),
})


def refuse_unsupported(opts: dict[str, Any]) -> None:
    """Drop RedisCluster keywords that ask for nothing; ConfigurationError for one that asks for a
    feature clusterpool lacks, naming it and what to do."""
    for name, why in UNSUPPORTED_COMPAT.items():
        if name not in opts:
            continue
        value = opts.pop(name)
        if value is None or getattr(value, "enabled", None) is False:
            continue
        raise errors.ConfigurationError(f"{name}={value!r}: {why}")


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


# redis.Redis keywords that belong to a connection, passed through untouched.
CONNECTION_KEYS = frozenset(
    {
        "username", "password", "socket_timeout", "socket_connect_timeout",
        "socket_keepalive", "socket_keepalive_options", "socket_read_size",
        "encoding", "encoding_errors", "decode_responses", "client_name",
        "protocol", "legacy_responses", "credential_provider", "driver_info",
        "lib_name", "lib_version", "health_check_interval", "redis_connect_func",
        "ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path",
        "ssl_ca_data", "ssl_check_hostname", "ssl_password", "ssl_min_version",
        "ssl_ciphers", "ssl_include_verify_flags", "ssl_exclude_verify_flags",
        "ssl_validate_ocsp", "ssl_validate_ocsp_stapled", "ssl_ocsp_context",
        "ssl_ocsp_expected_cert", "parser_class",
    }
)


@functools.cache
def default_driver_info() -> DriverInfo:
    """CLIENT SETINFO identity, built once: redis-py rebuilds it (reading package
    metadata, ~0.3 ms) for every connection that is not given one."""
    return DriverInfo().add_upstream_driver("clusterpool", __version__)
