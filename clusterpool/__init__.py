"""clusterpool: a Redis Cluster client with per-node pools, replica reads and a visible topology."""

from .client import ClusterClient
from .errors import (
    ClusterPoolError,
    ClusterUnreachableError,
    ConfigurationError,
    CrossSlotError,
    NodeUnavailableError,
    NotAClusterError,
    PoolClosedError,
    PoolTimeoutError,
    SlotNotCoveredError,
    TooManyRedirectionsError,
    UnknownOutcomeError,
    WriteOnReaderError,
)
from .events import (
    Event,
    NodeAdded,
    NodeHealthChanged,
    NodeRemoved,
    RefreshFailed,
    RoleChanged,
    SlotsMoved,
    TopologyRefreshed,
)
from .node import Health
from .pool import PoolStats
from .readfrom import ANY, NEAREST, PRIMARY, REPLICA, REPLICA_PREFERRED, NodeStates, ReadStrategy
from .slots import key_slot, slot_of
from .topology import Node, Shard, Topology

__version__ = "0.1.0"

__all__ = [
    "ANY", "NEAREST", "PRIMARY", "REPLICA", "REPLICA_PREFERRED",
    "ClusterClient", "ClusterPoolError", "ClusterUnreachableError", "ConfigurationError",
    "CrossSlotError", "Event", "Health", "Node", "NodeAdded", "NodeHealthChanged", "NodeRemoved",
    "NodeStates", "NodeUnavailableError", "NotAClusterError", "PoolClosedError", "PoolStats",
    "PoolTimeoutError", "ReadStrategy", "RefreshFailed", "RoleChanged", "Shard", "SlotNotCoveredError",
    "SlotsMoved", "TooManyRedirectionsError", "Topology", "TopologyRefreshed", "UnknownOutcomeError",
    "WriteOnReaderError", "key_slot", "slot_of",
]
