"""Asking nodes what the cluster looks like: the first map at start, and each refresh's views.

Probe connections are the client's own (never pooled), with `refresh_timeout` for
connect and reply, RESP2 (no HELLO round trip) and no CLIENT SETINFO, so a slow or
dead node costs one short timeout. What to ask a node (CLUSTER SHARDS or SLOTS, and
CLUSTER NODES for the config epochs `agreement` orders owners by), and what a refusal
means, is `viewquery`'s, shared with the asyncio client; `Discovery.queries` remembers
per node what it answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis import exceptions as rx
from redis.connection import AbstractConnection

from .agreement import View
from .config import Config
from .connection import make_connection
from .topology import Topology
from .refreshsteps import drive
from .viewquery import Queries, view_steps

class Discovery:
    """Reads maps from nodes; `conn_kwargs` gives the client's current connection keywords."""

    def __init__(self, config: Config, conn_kwargs: Callable[[], Mapping[str, Any]]) -> None:
        self._config = config
        self._conn_kwargs = conn_kwargs
        self.queries = Queries()  # per node: the discovery commands it answers, when not the default

    def probe(self, host: str, port: int) -> AbstractConnection:
        """A connection of its own (not pooled) with the refresh timeout, RESP2, no client name."""
        kw = dict(self._conn_kwargs())
        kw["socket_timeout"] = kw["socket_connect_timeout"] = self._config.refresh_timeout
        kw.pop("client_name", None)
        kw["protocol"] = 2  # RESP2: no HELLO round trip; parse_shards reads either shape
        conn = make_connection(host, port, kw, ssl=self._config.ssl, readonly=False)
        conn.announce = False  # nor CLIENT SETINFO: a probe lives for one or two commands
        return conn

    def first_map(self, host: str, port: int) -> Topology:
        """The map as one startup node sees it (errors say what is wrong with that node)."""
        return self.view(f"{host}:{port}").topology

    def view(self, name: str) -> View:
        """One node's view for the refresher: its map and the config epochs it knows, in one round
        trip (two when the node refuses a command it did not refuse before; see viewquery)."""
        host, _, port_s = name.rpartition(":")
        asked = self.queries.for_node(name, time.monotonic())
        conn = self.probe(host, int(port_s))
        try:
            conn.connect()
            view, worked = drive(view_steps(name, asked, tls=self._config.ssl, address_map=self._config.address_map),
                                 lambda commands: _exchange(conn, commands))
        finally:
            conn.disconnect()
        self.queries.learn(name, asked, worked, time.monotonic())
        return view


def _exchange(conn: AbstractConnection, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """Send `commands` in one write and read one reply each; an error reply is returned, not raised."""
    conn.send_packed_command(conn.pack_commands(commands))
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(conn.read_response())
        except rx.ResponseError as e:
            replies.append(e)
    return replies
