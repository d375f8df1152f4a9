"""clusterpool for asyncio: the connection layer (shared auto-pipelined connections, dedicated leases)."""

from __future__ import annotations

from .errors import CommandTimeoutError, LostConnectionError
from .mux import MuxConnection, MuxStats
from .settings import NodeSettings

__all__ = ["CommandTimeoutError", "LostConnectionError", "MuxConnection", "MuxStats", "NodeSettings"]
