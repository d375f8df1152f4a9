"""Asking one node what the cluster looks like, for asyncio: the async twin of discovery.py's I/O.

A probe is a connection of its own (never shared), with `refresh_timeout` for connect and
reply, RESP2 and no client name, closed after one round trip of CLUSTER SHARDS + CLUSTER
NODES (or what the node answers instead). What to ask and what the answers mean is
`viewquery.view_steps`, shared with the sync client; this module only sends and reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis import exceptions as rx
from redis.asyncio.connection import Connection

from ..agreement import View
from ..config import Config
from ..refreshsteps import adrive
from ..viewquery import Queries, view_steps
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


async def read_view(config: Config, conn_kwargs: Mapping[str, Any], name: str, queries: Queries) -> View:
    """One node's view: its map and the config epochs it knows, in one round trip (two when the
    node refuses a command it did not refuse before); `queries` remembers what it answers."""
    host, _, port_s = name.rpartition(":")
    asked = queries.for_node(name, time.monotonic())
    steps = view_steps(name, asked, tls=config.ssl, address_map=config.address_map)
    conn = await open_connection(probe_settings(config, conn_kwargs, host, int(port_s)))
    try:
        async with asyncio.timeout(config.refresh_timeout):
            view, worked = await adrive(steps, lambda commands: _exchange(conn, commands))
    except TimeoutError:
        raise rx.TimeoutError(f"{name} did not answer CLUSTER {asked.map[1]} within {config.refresh_timeout}s") from None
    finally:
        await close_connection(conn)
    queries.learn(name, asked, worked, time.monotonic())
    return view


async def _exchange(conn: Connection, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Send `commands` in one write and read one reply each; an error reply is returned, not raised."""
    await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(await conn.read_response())
        except rx.ResponseError as e:
            replies.append(e)
    return replies
