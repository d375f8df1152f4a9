"""Asking nodes what the cluster looks like: the first map at start, and each refresh's views.

Probe connections are the client's own (never pooled), with `refresh_timeout` for
connect and reply, RESP2 (no HELLO round trip) and no CLIENT SETINFO, so a slow or
dead node costs one short timeout. A view is CLUSTER SHARDS and CLUSTER NODES (for the
config epochs `agreement` orders owners by) in one round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from redis import exceptions as rx
from redis.connection import AbstractConnection

from . import errors
from .agreement import View, make_view, parse_epochs
from .config import Config
from .connection import make_connection
from .topology import Topology, parse_shards, parse_slots

# What a startup node may fail with: startup_failure says which of these stop discovery.
STARTUP_ERRORS = (rx.AuthenticationError, errors.NotAClusterError, rx.ConnectionError, rx.TimeoutError, OSError,
                  rx.InvalidResponse)


def startup_failure(name: str, error: BaseException) -> str:
    """Why startup node `name` could not be used, for ClusterUnreachableError's list; raises what
    must stop discovery at once (bad credentials, a node that is not a cluster). Both clients."""
    if isinstance(error, rx.AuthenticationError):
        raise rx.AuthenticationError(f"authentication to {name} failed: {error} (check username/password)") from error
    if isinstance(error, errors.NotAClusterError):
        raise error
    if isinstance(error, rx.InvalidResponse):
        return f"{name}: does not speak the Redis protocol ({error}); is it a Redis port?"
    return f"{name}: {error}"


class Discovery:
    """Reads maps from nodes; `conn_kwargs` gives the client's current connection keywords."""

    def __init__(self, config: Config, conn_kwargs: Callable[[], Mapping[str, Any]]) -> None:
        self._config = config
        self._conn_kwargs = conn_kwargs

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
        conn = self.probe(host, port)
        try:
            conn.connect()
            return self.read_topology(conn, host, port)
        finally:
            conn.disconnect()

    def read_topology(self, conn: AbstractConnection, host: str, port: int) -> Topology:
        """CLUSTER SHARDS (CLUSTER SLOTS before 7.0) on `conn`; NotAClusterError for a standalone server."""
        source = f"{host}:{port}"
        try:
            conn.send_command("CLUSTER", "SHARDS")
            reply = conn.read_response()
            return parse_shards(reply, host, tls=self._config.ssl, address_map=self._config.address_map, source=source)
        except rx.ResponseError as e:
            msg = str(e).lower()
            if "cluster support disabled" in msg or "cluster mode is not enabled" in msg:
                raise errors.NotAClusterError(
                    f"{source} is not a cluster node (cluster-enabled is off); "
                    "use redis.Redis for a standalone server"
                ) from e
            if "unknown" not in msg:
                raise
        conn.send_command("CLUSTER", "SLOTS")  # server before 7.0
        return parse_slots(conn.read_response(), host, address_map=self._config.address_map, source=source)

    def view(self, name: str) -> View:
        """One node's view for the refresher: its map and the config epochs it knows, in one round trip."""
        host, _, port_s = name.rpartition(":")
        port = int(port_s)
        conn = self.probe(host, port)
        try:
            conn.connect()
            conn.send_packed_command(conn.pack_commands([("CLUSTER", "SHARDS"), ("CLUSTER", "NODES")]))
            try:
                shards: Any = conn.read_response()
            except rx.ResponseError as e:
                shards = e
            try:
                epochs, excluded = parse_epochs(conn.read_response())
            except rx.ResponseError:  # no CLUSTER NODES (a proxy, a restricted ACL): votes only
                epochs, excluded = {}, frozenset()
            if isinstance(shards, rx.ResponseError):  # before 7.0, or not a cluster: the slow path says which
                topo = self.read_topology(conn, host, port)
            else:
                topo = parse_shards(shards, host, tls=self._config.ssl, address_map=self._config.address_map, source=name)
            return make_view(name, topo, epochs, excluded)
        finally:
            conn.disconnect()

