"""What a node's INFO reply says about where it sits and how far behind its primary it is (pure).

The maintenance side (health.py for the sync client, asyncio/watch.py) sends `INFO server
replication` once per node (the zone, Valkey 8's `availability_zone`, never changes while the
process runs) and `INFO replication` after that. A primary's reply lists each replica it
feeds with the offset the replica acknowledged and the seconds since that acknowledgement,
so one reply, taken at one instant, gives the lag of every replica of the shard
(`replica_lags`), including one that is paused and cannot answer for itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .topology import Node


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a replica is behind its primary, as the primary sees it.

    `bytes`: replication offset the primary has and the replica has not acknowledged.
    `seconds`: since the replica's last acknowledgement, counted only while `bytes` > 0
    (a replica with nothing to catch up on is not stale, however quiet the primary).
    `linked`: the primary lists the replica as online (not syncing, not disconnected).
    """

    bytes: int
    seconds: int
    linked: bool = True


UNLINKED = Lag(0, 0, linked=False)


def info_fields(reply: str) -> dict[str, str]:
    """An INFO reply's `key:value` lines as a dict (sections and comments dropped)."""
    out: dict[str, str] = {}
    for line in reply.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def zone_of(fields: Mapping[str, str]) -> str | None:
    """The node's availability zone (Valkey 8+ `INFO server`); None when unset or not reported."""
    return fields.get("availability_zone") or None


def link_down(fields: Mapping[str, str]) -> bool:
    """A replica's own INFO replication says its link to the primary is down or still syncing."""
    return fields.get("master_link_status") == "down" or fields.get("master_sync_in_progress") == "1"


def _replica_entry(value: str) -> dict[str, str]:
    """`ip=..,port=..,state=online,offset=..,lag=..` as a dict."""
    return dict(p.partition("=")[::2] for p in value.split(","))


def replica_lags(fields: Mapping[str, str], replicas: Iterable[Node]) -> dict[str, Lag]:
    """The lag of each of `replicas` (by name) from its primary's INFO replication `fields`.

    A replica the primary does not list as online is `UNLINKED`. Replicas are matched by
    address, or by port alone when the primary sees them from another address (NAT) and
    only one replica has that port.
    """
    try:
        head = int(fields.get("master_repl_offset", ""))
    except ValueError:
        return {}  # not a primary's reply
    entries = [_replica_entry(v) for k, v in fields.items() if k.startswith("slave") and k[5:].isdigit()]
    by_addr = {(e.get("ip"), e.get("port")): e for e in entries}
    by_port: dict[str | None, list[dict[str, str]]] = {}
    for e in entries:
        by_port.setdefault(e.get("port"), []).append(e)
    out: dict[str, Lag] = {}
    for node in replicas:
        port = str(node.port)
        entry = by_addr.get((node.host, port))
        if entry is None and len(by_port.get(port, ())) == 1:
            entry = by_port[port][0]
        out[node.name] = _lag(head, entry)
    return out


def _lag(head: int, entry: dict[str, str] | None) -> Lag:
    if entry is None or entry.get("state") != "online":
        return UNLINKED
    try:
        behind = max(head - int(entry.get("offset", "")), 0)
        since_ack = int(entry.get("lag", "0"))
    except ValueError:
        return UNLINKED
    return Lag(behind, since_ack if behind else 0)
