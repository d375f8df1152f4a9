"""Pub/sub decisions shared by the sync and asyncio clients (pure: no sockets, no clock).

How this works: a driver (clusterpool.pubsub, clusterpool.asyncio.pubsub) holds one
connection per node and asks this module where a subscription goes, which ones must
move after the map changed or a node dropped them, what a raw reply means, and whether
a message is handed to a handler, returned, or hidden. The drivers only do the I/O.

The rules:
  * A shard channel lives on the primary of its slot (`shard_owner`); SSUBSCRIBE and
    SUNSUBSCRIBE are sent one channel at a time, grouped by the node holding each
    (`plan_sunsubscribe`), so confirmations carry the same counts as RedisCluster's.
  * Classic SUBSCRIBE/PSUBSCRIBE sit on one node: the pinned one, else the primary of
    the first channel's slot, else a live primary (`classic_node`); after that node is
    lost they try the same order, then the old node, then the other primaries
    (`classic_candidates`).
  * After a new map, shard channels whose slot's owner is another node move
    (`moved_shard_channels`); a `sunsubscribe` the client did not ask for means the
    server dropped the channel (its node lost the slot) and it moves too
    (`AwaitedSunsubscribes` counts the confirmations the client asked for).
  * Messages have redis-py's dict shape (`message_of`); publish messages go to the
    subscription's handler if it has one (`handler_for`), and then the read returns
    None (`HANDLED`); subscribe/unsubscribe confirmations are hidden with
    `ignore_subscribe_messages` (`hidden`), pongs never.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from redis.exceptions import DataError, PubSubError, RedisClusterException

from ._redispy import str_if_bytes
from .slots import slot_of
from .topology import Topology

PUBLISH_MESSAGE_TYPES = ("message", "pmessage", "smessage")
UNSUBSCRIBE_MESSAGE_TYPES = ("unsubscribe", "punsubscribe", "sunsubscribe")
SUBSCRIBE_MESSAGE_TYPES = ("subscribe", "psubscribe", "ssubscribe", *UNSUBSCRIBE_MESSAGE_TYPES)

CHANNEL = "channel"
PATTERN = "pattern"
SHARD = "shard"

# which registry a confirmation or message is about
_KIND_OF_TYPE = {
    "subscribe": CHANNEL, "unsubscribe": CHANNEL, "message": CHANNEL,
    "psubscribe": PATTERN, "punsubscribe": PATTERN, "pmessage": PATTERN,
    "ssubscribe": SHARD, "sunsubscribe": SHARD, "smessage": SHARD,
}


# ---------------------------------------------------------------- where subscriptions live


def shard_owner(topology: Topology | None, channel: Any) -> str:
    """The primary serving `channel`'s slot in `topology` ("" when none is known)."""
    if topology is None:
        return ""
    shard = topology.slot_table[slot_of(channel)]
    return shard.primary.name if shard is not None and shard.primary is not None else ""


def by_slot(subs: Mapping[Any, Any]) -> dict[int, dict[Any, Any]]:
    """Subscriptions (name -> handler) grouped by slot, in the order given."""
    out: dict[int, dict[Any, Any]] = {}
    for ch, handler in subs.items():
        out.setdefault(slot_of(ch), {})[ch] = handler
    return out


HALF_ADDRESS = "Passing a host requires passing a port, and vice versa"  # redis.cluster's DataError text


def pinned_name(node: Any = None, host: str | None = None, port: int | None = None,
                half_address: str = HALF_ADDRESS) -> str:
    """The node name ("host:port") classic subscriptions are pinned to, "" for none; redis-py's
    DataError (`half_address` its text) when only one of host and port is given."""
    if node is not None:
        return f"{node.host}:{node.port}"
    if host is None and port is None:
        return ""
    if host is None or port is None:
        raise DataError(half_address)
    return f"{host}:{port}"


def check_pinned(topology: Topology, name: str) -> None:
    """RedisCluster's RedisClusterException when the pinned node `name` is not in the map."""
    if name and name not in topology.by_name:
        raise RedisClusterException(f"Node {name} doesn't exist in the cluster")


def classic_node(pinned: str, avoid: str, key_owner: str, live: Sequence[str], pick: Callable[[Sequence[str]], str]) -> str:
    """Where classic subscriptions go: the pinned node unless it is `avoid`, else the first
    channel's slot owner (`key_owner`, "" when unknown), else `pick` of the live primaries
    ("" when there is none)."""
    name = pinned if pinned != avoid else ""
    name = name or (key_owner if key_owner != avoid else "")
    if name:
        return name
    return pick(live) if live else ""


def classic_candidates(pinned: str, key_owner: str, previous: str, others: Iterable[str]) -> list[str]:
    """Nodes to try, in order, to resubscribe classic subscriptions whose node was lost:
    the pinned node or the first channel's owner, the node they were on (a restart or
    blip), then the other primaries (already shuffled by the caller)."""
    first = [n for n in (pinned or key_owner, previous) if n]
    return list(dict.fromkeys([*first, *others]))


def moved_shard_channels(held: Mapping[str, Iterable[Any]], owner_of: Callable[[Any], str]) -> dict[str, list[Any]]:
    """Per node, the shard channels it holds whose slot another node serves now
    (an unknown owner, "", moves nothing: wait for a map that names one)."""
    out: dict[str, list[Any]] = {}
    for node, channels in held.items():
        moved = [ch for ch in channels if owner_of(ch) not in ("", node)]
        if moved:
            out[node] = moved
    return out


def plan_sunsubscribe(names: Sequence[Any] | None, held: Mapping[str, Iterable[Any]], pending: Iterable[Any],
                      owner_of: Callable[[Any], str], norm: Callable[[Any], Any]) -> dict[str, list[Any]]:
    """Per node, which channels to SUNSUBSCRIBE there: when `names` is None every held one
    not already being unsubscribed (`pending`), else each name on the node holding it, or on
    its slot's owner if we have a connection there (as RedisCluster does for a channel not
    subscribed)."""
    sets = {node: set(chs) for node, chs in held.items()}
    if names is None:
        skip = set(pending)
        return {node: [ch for ch in chs if ch not in skip] for node, chs in held.items()}
    out: dict[str, list[Any]] = {}
    for ch in names:
        n = norm(ch)
        holder = next((node for node, chs in sets.items() if n in chs), "") or owner_of(ch)
        if holder in sets:
            out.setdefault(holder, []).append(ch)
    return out


class AwaitedSunsubscribes:
    """The SUNSUBSCRIBE confirmations one connection still waits for (a count per channel).

    A `sunsubscribe` reply either confirms one the client sent or is the server dropping
    the channel (its node lost the slot). redis-py's pending set cannot tell them apart:
    SSUBSCRIBE, SUNSUBSCRIBE, SSUBSCRIBE of one channel empties it before the middle
    confirmation arrives, and that confirmation would then look server-sent. Counting
    what was sent can. Channels are given as the server's replies spell them.
    """

    __slots__ = ("_count",)

    def __init__(self) -> None:
        self._count: dict[Any, int] = {}

    def sent(self, channel: Any) -> None:
        self._count[channel] = self._count.get(channel, 0) + 1

    def clear(self) -> None:
        """Forget every confirmation still to come (the connection was remade: none will)."""
        self._count.clear()

    def server_unsubscribed(self, response: Any) -> Any:
        """The shard channel of a `sunsubscribe` the client did not ask for (None otherwise);
        a confirmation of one it did ask for is counted off."""
        if not (isinstance(response, list) and len(response) > 1 and str_if_bytes(response[0]) == "sunsubscribe"):
            return None
        ch = response[1]
        n = self._count.get(ch, 0)
        if not n:
            return ch
        if n == 1:
            del self._count[ch]
        else:
            self._count[ch] = n - 1
        return None

    def __bool__(self) -> bool:
        return bool(self._count)


def forget(lost: Mapping[Any, Any], names: Sequence[Any] | None, norm: Callable[[Any], Any]) -> dict[Any, Any]:
    """`lost` without `names` (given as the caller wrote them, or normalised); all when None."""
    if names is None:
        return {}
    drop = {k for name in names for k in (name, norm(name))}
    return {k: v for k, v in lost.items() if k not in drop}


def missing_handler(channels: Mapping[Any, Any], patterns: Mapping[Any, Any],
                    shard_channels: Mapping[Any, Any]) -> PubSubError | None:
    """redis-py's error for run()/run_in_thread() when a subscription has no handler."""
    for kind, subs in (("Channel", channels), ("Pattern", patterns), ("Shard Channel", shard_channels)):
        for name, handler in subs.items():
            if handler is None:
                return PubSubError(f"{kind}: '{name}' has no handler registered")
    return None


# ---------------------------------------------------------------- messages


def message_of(response: Any) -> dict[str, Any]:
    """redis-py's message dict for a raw pub/sub reply ({'type', 'pattern', 'channel', 'data'})."""
    if isinstance(response, bytes | str):  # PING's reply outside subscribed mode
        pong = b"PONG" if isinstance(response, bytes) else "PONG"
        empty = b"" if isinstance(response, bytes) else ""
        response = ["pong", empty if response == pong else response]
    kind = str_if_bytes(response[0])
    if kind == "pmessage":
        return {"type": kind, "pattern": response[1], "channel": response[2], "data": response[3]}
    if kind == "pong":
        return {"type": kind, "pattern": None, "channel": None, "data": response[1]}
    return {"type": kind, "pattern": None, "channel": response[1], "data": response[2]}


# A message its handler took: the get_message() that read it returns None at once, as redis-py's
# does (one message per call), so a handler's own ssubscribe() confirmation goes to the next call.
HANDLED: Final = object()


def is_publish(response: Any) -> bool:
    """Whether a raw reply is a published message (the only kind a handler is given)."""
    return isinstance(response, list | tuple) and len(response) > 0 and str_if_bytes(response[0]) in PUBLISH_MESSAGE_TYPES


def kind_of(message_type: str) -> str:
    """CHANNEL, PATTERN or SHARD: which subscriptions a message type is about ("" for pong)."""
    return _KIND_OF_TYPE.get(message_type, "")


def handler_for(message: Mapping[str, Any], channels: Mapping[Any, Any], patterns: Mapping[Any, Any],
                shard_channels: Mapping[Any, Any]) -> Any:
    """The handler a publish message goes to (None: return the message to the caller)."""
    kind = message["type"]
    if kind == "pmessage":
        return patterns.get(message["pattern"])
    if kind == "smessage":
        return shard_channels.get(message["channel"])
    if kind == "message":
        return channels.get(message["channel"])
    return None


def hidden(message_type: str, ignore_subscribe_messages: bool) -> bool:
    """Whether a confirmation is dropped because the caller ignores subscribe messages."""
    return ignore_subscribe_messages and message_type in SUBSCRIBE_MESSAGE_TYPES
