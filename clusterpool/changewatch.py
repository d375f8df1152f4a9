"""Noticing a cluster change cheaply between full refreshes, for both clients.

How this works: an idle client gets no MOVED reply to tell it of a failover, and a full
refresh (CLUSTER SHARDS from several nodes) every second would cost too much, so once a
`health_interval` the client asks one node for CLUSTER INFO and keeps its `Digest`:
the current epoch (bumped by every failover and slot ownership change), the number of
known nodes (joins, forgets), and the slot states (ok / pfail / fail, which move when a
node goes down). When the digest of the same node moves, the client refreshes at once,
and once more at the first check that finds it still: the watched node can hear of a
failover before the nodes a refresh samples do, and a refresh among them would keep the
old map. Otherwise the periodic refresh keeps its `refresh_interval`. The first answer,
and the first from a different node (the watched one went away), set a new baseline and
refresh (and settle) as a move does: the change may have come between the map and the baseline (a failover
right after connecting), and two nodes' digests are not compared (gossip lag differs). Driven by the sync maintenance thread (health.py) and the
asyncio refresh task (asyncio/state.py); this module only decides.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from .topology import Topology

# CLUSTER INFO fields that move when the map does; the message counters move all the time,
# and cluster_my_epoch differs from node to node.
DIGEST_FIELDS = ("cluster_state", "cluster_current_epoch", "cluster_known_nodes", "cluster_size",
                 "cluster_slots_assigned", "cluster_slots_ok", "cluster_slots_pfail", "cluster_slots_fail")

Digest = tuple[str, ...]


def digest(cluster_info: str) -> Digest:
    """The fields of a CLUSTER INFO reply that move when the cluster's shape does."""
    fields = dict(line.partition(":")[::2] for line in cluster_info.splitlines() if ":" in line)
    return tuple(fields.get(name, "").strip() for name in DIGEST_FIELDS)


@dataclass(frozen=True, slots=True)
class Watch:
    """The last digest seen and the node it came from (nothing yet: both None); `settling`:
    it moved, so refresh once more when it stops moving."""

    node: str | None = None
    last: Digest | None = None
    settling: bool = False


def observe(watch: Watch, node: str, cluster_info: str) -> tuple[Watch, bool]:
    """The new Watch after `node` answered CLUSTER INFO with `cluster_info`, and whether to
    refresh now: a new baseline, the digest moved (same node), or it stopped moving after it did."""
    now = digest(cluster_info)
    if watch.node != node or watch.last is None:  # a new baseline: refresh to match it
        return Watch(node, now, True), True
    if watch.last != now:
        return Watch(node, now, True), True
    return Watch(node, now), watch.settling


def watch_target(topology: Topology | None, skip: Container[str], previous: str | None = None) -> str | None:
    """The node to ask: the one asked last while it is still a usable primary, else the first
    usable primary by name (stable, so successive digests compare); `skip`: failing nodes."""
    if topology is None:
        return None
    primaries = sorted(n.name for n in topology.primaries if n.usable and n.name not in skip)
    if previous in primaries:
        return previous
    return primaries[0] if primaries else None
