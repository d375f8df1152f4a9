"""clusterpool: a Redis Cluster client with per-node pools, replica reads and a visible topology."""

from .client import ClusterClient
from .config import Config
from .cacheconfig import CacheConfig
from .cachestore import CacheStats
from .errors import (
    ClusterPoolError,
    ClusterUnreachableError,
    ConfigurationError,
    CrossSlotError,
    CrossSlotTransactionError,
    MissingKeyError,
    NodeUnavailableError,
    NotAClusterError,
    PoolClosedError,
    PoolTimeoutError,
    RetryTimeoutError,
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
    NodeZoneLearned,
    RefreshFailed,
    RoleChanged,
    SlotsMoved,
    TopologyRefreshed,
)
from .hedging import HedgePolicy, HedgeStats
from .nodestate import Health
from .nodeapi import ClusterNode
from .snapshots import PoolStats
from .readfrom import (
    ANY,
    AZ_AFFINITY,
    AZ_AFFINITY_REPLICAS_AND_PRIMARY,
    NEAREST,
    PRIMARY,
    REPLICA,
    REPLICA_PREFERRED,
    AZAffinity,
    LagBound,
    NodeStates,
    ReadStrategy,
)
from .replication import Lag
from .slots import key_slot, slot_of
from .topology import Node, Shard, Topology

from ._version import __version__ as __version__

__all__ = [
    "ANY", "AZ_AFFINITY", "AZ_AFFINITY_REPLICAS_AND_PRIMARY", "NEAREST", "PRIMARY", "REPLICA", "REPLICA_PREFERRED",
    "AZAffinity", "Lag", "LagBound", "NodeZoneLearned",
    "CacheConfig", "CacheStats", "ClusterClient", "ClusterNode", "ClusterPoolError", "Config", "CrossSlotTransactionError", "MissingKeyError", "ClusterUnreachableError", "ConfigurationError",
    "CrossSlotError", "Event", "Health", "HedgePolicy", "HedgeStats", "Node", "NodeAdded", "NodeHealthChanged", "NodeRemoved",
    "NodeStates", "NodeUnavailableError", "NotAClusterError", "PoolClosedError", "PoolStats",
    "PoolTimeoutError", "ReadStrategy", "RefreshFailed", "RetryTimeoutError", "RoleChanged", "Shard", "SlotNotCoveredError",
    "SlotsMoved", "TooManyRedirectionsError", "Topology", "TopologyRefreshed", "UnknownOutcomeError",
    "WriteOnReaderError", "key_slot", "slot_of",
]
