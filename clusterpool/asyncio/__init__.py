"""clusterpool for asyncio: `ClusterClient`, and its connection layer (shared auto-pipelined connections, dedicated leases)."""

from __future__ import annotations

from .client import ClusterClient
from .dedicated import Dedicated, DedicatedPool, DedicatedStats
from .errors import CommandTimeoutError, LostConnectionError
from .mux import MuxConnection, MuxStats
from .nodeset import NodeConnections, NodeConnectionsStats
from .settings import NodeSettings

__all__ = [
    "ClusterClient", "CommandTimeoutError", "Dedicated", "DedicatedPool", "DedicatedStats", "LostConnectionError",
    "MuxConnection", "MuxStats", "NodeConnections", "NodeConnectionsStats", "NodeSettings",
]
