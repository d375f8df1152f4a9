"""What to ask one node for its view of the cluster, and what its answer teaches (pure: no I/O, no clock).

How this works: a view is a map (CLUSTER SHARDS, or CLUSTER SLOTS where SHARDS is refused)
and the config epochs `agreement` orders owners by (CLUSTER NODES, optional). A node may
refuse a command because its server is too old (unknown command, Redis before 7.0) or
because the user's ACL denies it (NOPERM): both mean "use what this node lets us run".
`view_steps()` is a generator: it yields the commands to send in one round trip, the driver
(sync `discovery.py`, asyncio `asyncio/probe.py`, each through `refreshsteps.drive`/`adrive`)
sends them and sends back one reply per command (an error reply as its ResponseError, not
raised); its return value is the View and the `Query` that worked. `Queries` remembers, per node, a Query that differs from the
default, so the next refresh asks that node what it answers in one round trip; after
`recheck` seconds the default is tried again (an upgraded server, a widened ACL).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from redis import exceptions as rx

from . import errors
from .errors import refused
from .agreement import View, make_view, parse_epochs
from .topology import AddressMap, Topology, parse_shards, parse_slots

SHARDS = ("CLUSTER", "SHARDS")
SLOTS = ("CLUSTER", "SLOTS")
NODES = ("CLUSTER", "NODES")
RECHECK_AFTER = 600.0  # seconds a node's refusal is trusted before the default query is tried again

Command = tuple[str, ...]
Replies = Sequence[Any]  # one per command sent: the reply, or the ResponseError the node answered


@dataclass(frozen=True, slots=True)
class Query:
    """What to ask one node: which map command, and whether CLUSTER NODES too (config epochs)."""

    map: Command = SHARDS
    epochs: bool = True

    @property
    def commands(self) -> tuple[Command, ...]:
        return (self.map, NODES) if self.epochs else (self.map,)

    @property
    def other_map(self) -> Command:
        """The map command to try when this one is refused."""
        return SLOTS if self.map == SHARDS else SHARDS


DEFAULT = Query()


def _not_a_cluster(error: BaseException, source: str) -> errors.NotAClusterError | None:
    msg = str(error).lower()
    if "cluster support disabled" in msg or "cluster mode is not enabled" in msg:
        return errors.NotAClusterError(
            f"{source} is not a cluster node (cluster-enabled is off); "
            "use redis.Redis (or redis.asyncio.Redis) for a standalone server")
    return None


def _parse_map(command: Command, reply: Any, source: str, tls: bool, address_map: AddressMap | None) -> Topology:
    host = source.rpartition(":")[0]
    if command == SHARDS:
        return parse_shards(reply, host, tls=tls, address_map=address_map, source=source)
    return parse_slots(reply, host, address_map=address_map, source=source)


Steps = Generator[tuple[Command, ...], Replies, tuple[View, Query]]


def view_steps(source: str, query: Query = DEFAULT, *, tls: bool = False,
               address_map: AddressMap | None = None) -> Steps:
    """Ask `source` (host:port) for its view with `query`, falling back to the other map command
    when one is refused; returns the View and the Query that worked (to remember for `source`).

    Raises NotAClusterError for a standalone server, NoPermissionError when the node refuses
    both map commands, and any other error reply to the map command as it came."""
    replies = yield query.commands
    map_reply = replies[0]
    epochs: Mapping[str, int] = MappingProxyType({})
    excluded: frozenset[str] = frozenset()
    if query.epochs:
        nodes_reply = replies[1]
        if not isinstance(nodes_reply, rx.ResponseError):
            epochs, excluded = parse_epochs(nodes_reply)
        elif refused(nodes_reply):  # without epochs the agreement counts votes only (README)
            query = Query(query.map, epochs=False)
    if isinstance(map_reply, rx.ResponseError):
        problem = _not_a_cluster(map_reply, source)
        if problem is not None:
            raise problem from map_reply
        if not refused(map_reply):
            raise map_reply
        first = map_reply
        query = Query(query.other_map, query.epochs)
        (map_reply,) = yield (query.map,)
        if isinstance(map_reply, rx.ResponseError):
            if refused(map_reply):
                raise rx.NoPermissionError(
                    f"{source} runs neither CLUSTER SHARDS nor CLUSTER SLOTS for this user ({first}; {map_reply}); "
                    "the client needs one of them to learn the slot map") from map_reply
            raise map_reply
    topology = _parse_map(query.map, map_reply, source, tls, address_map)
    return make_view(source, topology, epochs, excluded), query


class Queries:
    """Per node, the Query it was last found to answer when that is not the default, and when
    that was learnt (a monotonic time the caller passes). Refresh threads learn in parallel, so
    the dict changes only by single get/set/pop calls, each atomic: no update is lost."""

    def __init__(self, recheck: float = RECHECK_AFTER) -> None:
        self.recheck = recheck
        self._known: dict[str, tuple[Query, float]] = {}

    def for_node(self, name: str, now: float) -> Query:
        """What to ask `name`: what it answered last, or the default once that is `recheck` old."""
        entry = self._known.get(name)
        if entry is None or now - entry[1] >= self.recheck:
            return DEFAULT
        return entry[0]

    def learn(self, name: str, asked: Query, worked: Query, now: float) -> None:
        """Remember that `name`, asked `asked`, answered `worked`; entries past `recheck` go.
        A node that answered the query it was asked keeps its entry's age (no renewal)."""
        entry = self._known.get(name)
        if asked == worked and (entry[0] == worked and now - entry[1] < self.recheck if entry else worked == DEFAULT):
            return
        for other, (_, at) in list(self._known.items()):
            if now - at >= self.recheck:
                self._known.pop(other, None)
        if worked == DEFAULT:
            self._known.pop(name, None)
        else:
            self._known[name] = (worked, now)

    def __len__(self) -> int:
        return len(self._known)
