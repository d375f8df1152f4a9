"""clusterpool for asyncio: `ClusterClient`, and its connection layer (shared auto-pipelined connections, dedicated leases)."""

from __future__ import annotations

from .client import ClusterClient
from .dedicated import Dedicated, DedicatedPool, DedicatedStats
from .errors import CommandTimeoutError, LostConnectionError
from .inspection import AsyncEventStream
from .mux import MuxConnection, MuxStats
from .nodeapi import ClusterNode
from .connections import NodeConnections, NodeConnectionsStats
from .pubsub import ClusterPubSub
from .settings import NodeSettings
from .transaction import TransactionPipeline

__all__ = [
    "AsyncEventStream", "ClusterClient", "ClusterNode", "ClusterPubSub", "CommandTimeoutError", "Dedicated", "DedicatedPool", "DedicatedStats", "LostConnectionError",
    "MuxConnection", "MuxStats", "NodeConnections", "NodeConnectionsStats", "NodeSettings",
    "TransactionPipeline",
]
