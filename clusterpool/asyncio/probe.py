"""Asking one node what the cluster looks like, for asyncio: the async twin of discovery.py's I/O.

A probe is a connection of its own (never shared), with `refresh_timeout` for connect and
reply, RESP2 and no client name, closed after one round trip of CLUSTER SHARDS + CLUSTER
NODES. Parsing and the view are the sync client's (topology.parse_shards, agreement.make_view).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from redis import exceptions as rx
from redis.asyncio.connection import Connection

from .. import errors
from ..agreement import View, make_view, parse_epochs
from ..config import Config
from ..topology import parse_shards, parse_slots
from .settings import NodeSettings, close_connection, open_connection

# keywords a probe does not take from the client's connection keywords
_NOT_FOR_PROBES = frozenset({"client_name", "protocol", "socket_timeout", "socket_connect_timeout",
                             "parser_class", "redis_connect_func"})


def node_settings(config: Config, conn_kwargs: Mapping[str, Any], host: str, port: int, *,
                  readonly: bool = False) -> NodeSettings:
    """The settings of a command connection to `host:port` from the client's keywords."""
    kw = {k: v for k, v in conn_kwargs.items() if k not in ("parser_class", "redis_connect_func")}
    if config.ssl:
        kw["ssl"] = True
    return NodeSettings.make(host, port, readonly=readonly, **kw)


def probe_settings(config: Config, conn_kwargs: Mapping[str, Any], host: str, port: int) -> NodeSettings:
    kw = {k: v for k, v in conn_kwargs.items() if k not in _NOT_FOR_PROBES}
    if config.ssl:
        kw["ssl"] = True
    t = config.refresh_timeout
    return NodeSettings.make(host, port, socket_timeout=t, socket_connect_timeout=t, protocol=2, **kw)


async def read_view(config: Config, conn_kwargs: Mapping[str, Any], name: str) -> View:
    """One node's view: its map and the config epochs it knows, in one round trip."""
    host, _, port_s = name.rpartition(":")
    port = int(port_s)
    settings = probe_settings(config, conn_kwargs, host, port)
    conn = await open_connection(settings)
    try:
        async with asyncio.timeout(config.refresh_timeout):
            await conn.send_packed_command(
                conn.pack_commands([("CLUSTER", "SHARDS"), ("CLUSTER", "NODES")]), check_health=False)
            try:
                shards: Any = await conn.read_response()
            except rx.ResponseError as e:
                shards = e
            try:
                epochs, excluded = parse_epochs(await conn.read_response())
            except rx.ResponseError:  # no CLUSTER NODES (a proxy, a restricted ACL): votes only
                epochs, excluded = {}, frozenset()
            if isinstance(shards, rx.ResponseError):
                topo = await _old_map(conn, config, shards, host, port)
            else:
                topo = parse_shards(shards, host, tls=config.ssl, address_map=config.address_map, source=name)
        return make_view(name, topo, epochs, excluded)
    except TimeoutError:
        raise rx.TimeoutError(f"{name} did not answer CLUSTER SHARDS within {config.refresh_timeout}s") from None
    finally:
        await close_connection(conn)


async def _old_map(conn: Connection, config: Config, error: rx.ResponseError, host: str, port: int) -> Any:
    """CLUSTER SLOTS for a server before 7.0; NotAClusterError for a standalone server."""
    msg = str(error).lower()
    source = f"{host}:{port}"
    if "cluster support disabled" in msg or "cluster mode is not enabled" in msg:
        raise errors.NotAClusterError(
            f"{source} is not a cluster node (cluster-enabled is off); use redis.asyncio.Redis for a standalone server"
        ) from error
    if "unknown" not in msg:
        raise error
    await conn.send_command("CLUSTER", "SLOTS", check_health=False)
    return parse_slots(await conn.read_response(), host, address_map=config.address_map, source=source)
