"""Pub/sub for the asyncio client: `client.pubsub()` returns a `ClusterPubSub`.

It has redis.asyncio's PubSub interface (subscribe/psubscribe/unsubscribe/punsubscribe
with handlers, `await get_message(ignore_subscribe_messages=, timeout=)`, `async for m
in p.listen()`, `run()`, `ping()`, `aclose()`, `async with`) plus shard channels
(ssubscribe/sunsubscribe, get_sharded_message, reinitialize_shard_subscriptions) as in
redis.asyncio's ClusterPubSub, and returns redis-py's message dicts.

How this works: classic SUBSCRIBE/PSUBSCRIBE go to one node (the pinned one, else the
primary of the first channel's slot), SSUBSCRIBE to each channel's slot primary, as the
sync client does (subscriptions.py decides both). Each node used has one connection
leased from its dedicated pool and one reader task (sublinks.py); everything read goes
to one inbox, which `get_message` takes from, so cancelling a `get_message` loses and
breaks nothing. Subscriptions whose node dropped them (broken connection, a server-sent
`sunsubscribe` after a migration or demotion, MOVED, or a new map) are resubscribed on
the slot's new owner by a keeper task (resubscribe.py); the server's `sunsubscribe` is
swallowed and the new `ssubscribe` confirmation shows (ignore_subscribe_messages hides
it). Messages published while a subscription moves are lost: pub/sub has no history.
`aclose()` (and the client's) cancels every task and closes every connection, and waits.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any


from .._redispy import Encoder, list_or_args, parse_pubsub_subscriptions
from .. import errors
from .. import subscriptions as rules
from .nodeapi import ClusterNode, handle
from .resubscribe import Keeper
from .sublinks import CONN_ERRORS, Link, Links

if TYPE_CHECKING:
    from redis.asyncio.connection import Connection

    from .state import ClusterState

HALF_ADDRESS = "Specify both host and port"  # redis.asyncio.cluster's DataError text


class ClusterPubSub:
    """redis.asyncio's PubSub interface over a cluster; see the module docstring."""

    PUBLISH_MESSAGE_TYPES = rules.PUBLISH_MESSAGE_TYPES
    UNSUBSCRIBE_MESSAGE_TYPES = rules.UNSUBSCRIBE_MESSAGE_TYPES
    HEALTH_CHECK_MESSAGE = "redis-py-health-check"

    def __init__(self, state: ClusterState, encoder: Encoder, backoff: Callable[[int], float], node: Any = None,
                 host: str | None = None, port: int | None = None, ignore_subscribe_messages: bool = False,
                 **kwargs: Any) -> None:
        """Made by `ClusterClient.pubsub()`; no I/O until the first subscribe."""
        unknown = set(kwargs) - {"encoder", "event_dispatcher", "shard_hint", "push_handler_func"}
        if unknown:
            raise errors.ConfigurationError(f"unknown pubsub option(s): {', '.join(sorted(unknown))}")
        if kwargs.get("push_handler_func") is not None:
            raise errors.ConfigurationError(
                "push_handler_func is not supported by the asyncio pubsub: RESP3 push messages come back "
                "from get_message() as with RESP2")
        self.encoder = kwargs.get("encoder") or encoder
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self._links = Links(state, self.encoder, backoff)
        self._lock = asyncio.Lock()
        self._keeper = Keeper(self._links, self._lock)
        self._links.on_orphan = self._keeper.wake
        self._links.served = self
        self._closed = False
        self.set_pubsub_node(None, node, host, port)

    # ---- state -----------------------------------------------------------------------

    @property
    def channels(self) -> dict[Any, Any]:
        return self._links.subs(rules.CHANNEL)

    @property
    def patterns(self) -> dict[Any, Any]:
        return self._links.subs(rules.PATTERN)

    @property
    def shard_channels(self) -> dict[Any, Any]:
        return self._links.subs(rules.SHARD)

    @property
    def pending_unsubscribe_channels(self) -> set[Any]:
        """Channels whose UNSUBSCRIBE is sent but not confirmed yet (redis-py's PubSub attribute)."""
        return self._links.pending(rules.CHANNEL)

    @property
    def pending_unsubscribe_patterns(self) -> set[Any]:
        """Patterns whose PUNSUBSCRIBE is sent but not confirmed yet."""
        return self._links.pending(rules.PATTERN)

    @property
    def pending_unsubscribe_shard_channels(self) -> set[Any]:
        """Shard channels whose SUNSUBSCRIBE is sent but not confirmed yet, on any node."""
        return self._links.pending(rules.SHARD)

    @property
    def subscribed(self) -> bool:
        """True while any channel, pattern or shard channel is subscribed (or being moved)."""
        return self._links.subscribed

    def nodes(self) -> dict[str, list[str]]:
        """Which node each kind of subscription is on now: {"classic": [...], "sharded": [...]}."""
        classic = self._links.classic
        return {"classic": [classic.name] if classic else [], "sharded": sorted(self._links.shard)}

    def set_pubsub_node(self, cluster: Any = None, node: Any = None, host: str | None = None,
                        port: int | None = None) -> None:
        """Pin classic subscriptions to a node: RedisClusterException now when the client's map has
        no such node, or at the first subscribe when the client has no map yet (no I/O here)."""
        name = rules.pinned_name(node, host, port, half_address=HALF_ADDRESS)
        topo = self._links.state.topology
        if topo is not None:
            rules.check_pinned(topo, name)
        self._links.pinned = name

    @property
    def node(self) -> ClusterNode | None:
        """RedisCluster's `node` attribute: `get_pubsub_node()`."""
        return self.get_pubsub_node()

    def get_pubsub_node(self) -> ClusterNode | None:
        """The node holding the classic subscriptions, as RedisCluster's node object (None before
        the first subscribe, unless pinned)."""
        links = self._links
        name = links.classic.name if links.classic is not None else links.pinned
        topo = links.state.topology
        node = topo.by_name.get(name) if name and topo is not None else None
        return handle(node) if node is not None else None

    def get_redis_connection(self) -> Connection | None:
        """redis.asyncio's: the classic subscriptions' own connection (to `get_pubsub_node()`), None
        before the first subscribe. Its reader task reads every reply: inspect it (host, port),
        never read from or write to it."""
        link = self._links.classic
        return link.conn.connection if link is not None else None

    def _check_open(self) -> None:
        if self._closed:
            raise errors.PoolClosedError("this pubsub is closed")

    # ---- reading ---------------------------------------------------------------------

    async def get_message(self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0) -> Any:
        """The next message from any node, or None after `timeout` seconds (None: wait for ever);
        None at once after a message its handler took, as redis.asyncio's."""
        return await self._next(ignore_subscribe_messages, timeout, "")

    async def get_sharded_message(self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0,
                                  target_node: Any = None) -> Any:
        """As `get_message` (which also returns shard messages); `target_node` reads only that node's."""
        only = f"{target_node.host}:{target_node.port}" if target_node is not None else ""
        return await self._next(ignore_subscribe_messages, timeout, only)

    async def _next(self, ignore: bool, timeout: float | None, only: str, until_idle: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        inbox = self._links.inbox
        while True:
            item = inbox.take(only)
            if item is not None:
                msg = await self._handle(item, ignore)
                if msg is rules.HANDLED:
                    return None
                if msg is not None:
                    return msg
                continue
            if self._closed or (until_idle and not self.subscribed):
                return None
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            await inbox.wait(remaining)

    async def _handle(self, item: tuple[Link, Any], ignore: bool) -> Any:
        """The message for the caller, None for a hidden one, or rules.HANDLED."""
        link, response = item
        if isinstance(response, BaseException):
            raise response
        msg = rules.message_of(response)
        subs = link.subs
        handler = rules.handler_for(msg, subs[rules.CHANNEL], subs[rules.PATTERN], subs[rules.SHARD])
        if handler is not None:
            res = handler(msg)
            if inspect.isawaitable(res):
                await res
            return rules.HANDLED
        if rules.hidden(msg["type"], ignore or self.ignore_subscribe_messages):
            return None
        return msg

    async def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        """redis-py's message dict for a raw reply (the classic link's handlers apply)."""
        if response is None:
            return None
        link = self._links.classic or next(iter(self._links.shard.values()), None)
        if link is None:
            return rules.message_of(response)
        msg = await self._handle((link, response), ignore_subscribe_messages)
        return None if msg is rules.HANDLED else msg

    async def listen(self) -> AsyncIterator[Any]:
        """Messages as they arrive, while anything is subscribed."""
        while self.subscribed and not self._closed:
            msg = await self._next(False, None, "", until_idle=True)
            if msg is not None:
                yield msg

    async def run(self, *, exception_handler: Callable[[BaseException, ClusterPubSub], Any] | None = None,
                  poll_timeout: float = 1.0, pubsub: ClusterPubSub | None = None) -> None:
        """Call the handlers of every subscription until cancelled or closed (redis.asyncio's `run`)."""
        missing = rules.missing_handler(self.channels, self.patterns, self.shard_channels)
        if missing is not None:
            raise missing
        source = pubsub if pubsub is not None else self
        while not self._closed:
            try:
                await source.get_message(ignore_subscribe_messages=True, timeout=poll_timeout)
            except asyncio.CancelledError:
                raise
            except BaseException as e:
                if exception_handler is None:
                    raise
                res = exception_handler(e, self)
                if inspect.isawaitable(res):
                    await res
            await asyncio.sleep(0)

    # ---- classic subscriptions -------------------------------------------------------

    async def _classic_command(self, kind: str, command: str, subs: Mapping[Any, Any]) -> None:
        """(P)SUBSCRIBE on the classic link; on a broken connection everything on it moves
        (once); raises when these subscriptions found no node."""
        self._check_open()
        links = self._links
        async with self._lock:
            key = next(iter(subs), None)
            avoid = ""
            for attempt in range(2):
                try:
                    link = await links.classic_link(key, avoid)
                except CONN_ERRORS:
                    if attempt:
                        raise
                    avoid = links.pinned or await links.owner(key)
                    await links.refresh()
                    continue
                normed = {links.norm(k): v for k, v in subs.items()}
                link.subs[kind].update(normed)  # before sending: the reader may see the confirmation first
                link.pending[kind].difference_update(normed)
                try:
                    await links.send(link, command, *subs)
                    self._keeper.start()
                    return
                except CONN_ERRORS:  # what the link held moves, these new ones with it
                    await self._keeper.recover()
                    if not any(k in links.lost[kind] for k in normed):
                        return
                    if attempt:
                        links.forget(kind, list(subs))
                        raise
                    avoid = link.name

    async def subscribe(self, *args: Any, **kwargs: Any) -> None:
        """SUBSCRIBE on this object's classic node (any node receives every PUBLISH)."""
        await self._classic_command(rules.CHANNEL, "SUBSCRIBE", parse_pubsub_subscriptions(args, kwargs))

    async def psubscribe(self, *args: Any, **kwargs: Any) -> None:
        """PSUBSCRIBE on this object's classic node."""
        await self._classic_command(rules.PATTERN, "PSUBSCRIBE", parse_pubsub_subscriptions(args, kwargs))

    async def unsubscribe(self, *args: Any) -> None:
        """UNSUBSCRIBE the channels given (all when none are)."""
        await self._classic_unsub(rules.CHANNEL, "UNSUBSCRIBE", args)

    async def punsubscribe(self, *args: Any) -> None:
        """PUNSUBSCRIBE the patterns given (all when none are)."""
        await self._classic_unsub(rules.PATTERN, "PUNSUBSCRIBE", args)

    async def _classic_unsub(self, kind: str, command: str, args: tuple[Any, ...]) -> None:
        names = list_or_args(args[0], args[1:]) if args else None
        links = self._links
        async with self._lock:
            links.forget(kind, names)
            link = links.classic
            if link is None:
                return
            link.pending[kind].update([links.norm(n) for n in names] if names is not None else link.subs[kind])
            try:
                await links.send(link, command, *(names or ()))
            except CONN_ERRORS:
                links.forget(kind, names)

    async def ping(self, message: Any = None) -> None:
        """PING on the classic connection (its reply comes back as a 'pong' message)."""
        await self.execute_command(*(("PING", message) if message is not None else ("PING",)))

    async def execute_command(self, *args: Any) -> None:
        """Send a raw command on the classic connection (placed by args[1]'s slot if it has none yet)."""
        self._check_open()
        async with self._lock:
            link = await self._links.classic_link(args[1] if len(args) > 1 and args[0] != "PING" else None)
            await self._links.send(link, *args)

    # ---- shard channels --------------------------------------------------------------

    async def ssubscribe(self, *args: Any, target_node: Any = None, **kwargs: Any) -> None:
        """SSUBSCRIBE each channel on its slot's primary, one channel at a time in the order given."""
        self._check_open()
        subs = parse_pubsub_subscriptions(args, kwargs)
        links = self._links
        async with self._lock:
            for ch, handler in subs.items():
                try:
                    await links.ssubscribe_slot({ch: handler})
                except CONN_ERRORS:
                    await links.refresh()  # owner unreachable: try the (maybe new) owner once, else raise
                    await links.ssubscribe_slot({ch: handler})
            self._keeper.start()

    async def sunsubscribe(self, *args: Any, target_node: Any = None) -> None:
        """SUNSUBSCRIBE each channel on the node holding it (every shard channel when none are given)."""
        names = list_or_args(args[0], args[1:]) if args else None
        links = self._links
        async with self._lock:
            links.forget(rules.SHARD, names)
            held = {name: list(link.subs[rules.SHARD]) for name, link in links.shard.items()}
            topo = links.state.topology
            plan = rules.plan_sunsubscribe(names, held, links.pending(rules.SHARD),
                                           lambda ch: rules.shard_owner(topo, ch), links.norm)
            for name, mine in plan.items():
                link = links.shard.get(name)
                if link is None or not mine:
                    continue
                link.pending[rules.SHARD].update(links.norm(ch) for ch in mine)
                try:
                    for ch in mine:
                        link.awaited.sent(links.norm(ch))
                        await links.send(link, "SUNSUBSCRIBE", ch)
                except CONN_ERRORS:
                    links.forget(rules.SHARD, mine)

    async def reinitialize_shard_subscriptions(self) -> None:
        """Move shard subscriptions whose slot has another owner in the current map now
        (the keeper also does so by itself after any map change, MOVED or lost connection)."""
        async with self._lock:
            self._links.move_shards()
            await self._keeper.recover()

    on_slots_changed = reinitialize_shard_subscriptions

    # ---- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Unsubscribe from everything by closing every connection; waits for every task. Idempotent."""
        self._closed = True
        self._links.closed = True  # before the keeper stops: nothing may start it again
        await self._keeper.aclose()
        await self._links.aclose()

    close = aclose
    reset = aclose

    async def __aenter__(self) -> ClusterPubSub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        moving = sum(len(v) for v in self._links.lost.values())
        n = self.nodes()
        return (f"<clusterpool.asyncio.ClusterPubSub classic={n['classic'][0] if n['classic'] else None} "
                f"sharded={n['sharded']} moving={moving}{' closed' if self._closed else ''}>")
