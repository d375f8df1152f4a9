"""Pub/sub for the asyncio client: `client.pubsub()` returns a `ClusterPubSub`.

It has redis.asyncio's PubSub interface (subscribe/psubscribe/unsubscribe/punsubscribe
with handlers, `await get_message(ignore_subscribe_messages=, timeout=)`, `async for m
in p.listen()`, `run()`, `ping()`, `aclose()`, `async with`) plus shard channels
(ssubscribe/sunsubscribe, get_sharded_message) as in redis.asyncio's ClusterPubSub, and
returns redis-py's message dicts.

How this works: every node this object subscribes on gets one `_Link`: a connection
leased from that node's dedicated pool (dedicated.py) for the pubsub's lifetime, and
one reader task that reads it. The reader keeps the link's subscriptions up to date
(confirmations, a server-sent `sunsubscribe`, MOVED, a broken socket) and puts
everything the caller should see into one inbox, which `get_message` takes from; so a
cancelled `get_message` loses nothing and breaks nothing. Where subscriptions go and
what moves is decided by `clusterpool.subscriptions`, as for the sync client: shard
channels on their slot's primary, classic ones on one node.

A subscription that lost its node (the connection broke, the server unsubscribed it,
SSUBSCRIBE got MOVED, or a new map gives its slot to another primary) is "orphaned";
one keeper task resubscribes orphans where the current map puts them, refreshing the
map first and backing off (policy.decide) while no owner answers. Messages published
while a subscription moves are lost: pub/sub has no history. `aclose()` cancels the
readers and the keeper, closes the connections and waits for all of it.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx
from redis._parsers.encoders import Encoder
from redis.commands.helpers import list_or_args, parse_pubsub_subscriptions
from redis.utils import str_if_bytes

from .. import errors
from .. import subscriptions as rules
from ..policy import Budget, Failure, Kind, decide, failure_kind
from ..slots import slot_of
from ..topology import Node
from .dedicated import Dedicated, DedicatedPool
from .errors import is_error_reply
from .settings import close_connection

if TYPE_CHECKING:
    from .state import ClusterState

_CONN_ERRORS = (rx.ConnectionError, rx.TimeoutError, OSError)
# subscriptions are retried until they are closed: a budget that is never spent
_FOREVER = Budget(max_redirections=2**31, retries=2**31)
_IDLE_WAIT = 3600.0  # the keeper's longest wait with nothing to do (it wakes on any change)


class _Link:
    """One leased dedicated connection to one node and what is subscribed on it (keys normalised)."""

    def __init__(self, name: str, sharded: bool, pool: DedicatedPool, conn: Dedicated) -> None:
        self.name = name
        self.sharded = sharded
        self.pool = pool
        self.conn = conn
        self.subs: dict[str, dict[Any, Any]] = {rules.CHANNEL: {}, rules.PATTERN: {}, rules.SHARD: {}}
        self.pending: dict[str, set[Any]] = {rules.CHANNEL: set(), rules.PATTERN: set(), rules.SHARD: set()}
        self.reader: asyncio.Task[None] | None = None
        self.closed = False

    def held(self, kind: str) -> dict[Any, Any]:
        """Subscriptions of `kind` not being unsubscribed."""
        pending = self.pending[kind]
        return {k: v for k, v in self.subs[kind].items() if k not in pending}

    def idle(self) -> bool:
        """Nothing subscribed and no unsubscribe confirmation still to come."""
        return not any(self.subs.values()) and not any(self.pending.values())


class _Inbox:
    """What the readers received for the caller, in order; waiting on it is cancel-safe."""

    def __init__(self) -> None:
        self.items: deque[tuple[_Link, Any]] = deque()
        self._waiters: set[asyncio.Future[None]] = set()

    def put(self, link: _Link, item: Any) -> None:
        self.items.append((link, item))
        self.wake()

    def wake(self) -> None:
        for w in self._waiters:
            if not w.done():
                w.set_result(None)

    def take(self, only: str = "") -> tuple[_Link, Any] | None:
        """The oldest item (from node `only`'s connection if given)."""
        if not only:
            return self.items.popleft() if self.items else None
        for i, item in enumerate(self.items):
            if item[0].name == only:
                del self.items[i]
                return item
        return None

    async def wait(self, timeout: float | None) -> None:
        """Until something is put (or `wake()`), at most `timeout` seconds."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)


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
        self._state = state
        self.encoder = kwargs.get("encoder") or encoder
        self._backoff = backoff
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self._pinned = ""
        self.set_pubsub_node(None, node, host, port)
        self._classic: _Link | None = None
        self._shard: dict[str, _Link] = {}  # owner node name -> its link
        self._lost: dict[str, dict[Any, Any]] = {rules.CHANNEL: {}, rules.PATTERN: {}, rules.SHARD: {}}
        self._lost_classic_node = ""
        self._classic_key: Any = None  # the first channel or pattern: its slot's owner holds the classic link
        self._inbox = _Inbox()
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # readers, closers
        self._closed = False

    # ---- state -----------------------------------------------------------------------

    def _links(self) -> list[_Link]:
        return [*self._shard.values(), *([self._classic] if self._classic is not None else [])]

    def _subs(self, kind: str) -> dict[Any, Any]:
        out = dict(self._lost[kind])
        for link in self._links():
            out.update(link.subs[kind])
        return out

    @property
    def channels(self) -> dict[Any, Any]:
        return self._subs(rules.CHANNEL)

    @property
    def patterns(self) -> dict[Any, Any]:
        return self._subs(rules.PATTERN)

    @property
    def shard_channels(self) -> dict[Any, Any]:
        return self._subs(rules.SHARD)

    def _orphans(self) -> bool:
        return any(self._lost.values())

    @property
    def subscribed(self) -> bool:
        """True while any channel, pattern or shard channel is subscribed (or being moved)."""
        return self._orphans() or any(any(link.subs.values()) for link in self._links())

    def nodes(self) -> dict[str, list[str]]:
        """Which node each kind of subscription is on now: {"classic": [...], "sharded": [...]}."""
        return {"classic": [self._classic.name] if self._classic else [], "sharded": sorted(self._shard)}

    def set_pubsub_node(self, cluster: Any = None, node: Any = None, host: str | None = None,
                        port: int | None = None) -> None:
        """Pin classic subscriptions to a node (checked against the map at the first subscribe)."""
        if node is not None:
            host, port = node.host, node.port
        elif host is None and port is None:
            self._pinned = ""
            return
        elif host is None or port is None:
            raise rx.DataError("Passing a host requires passing a port, and vice versa")
        self._pinned = f"{host}:{port}"

    def get_pubsub_node(self) -> Node | None:
        """The node holding the classic subscriptions (None before the first one, unless pinned)."""
        name = self._classic.name if self._classic is not None else self._pinned
        topo = self._state.topology
        return topo.by_name.get(name) if name and topo is not None else None

    def _check_open(self) -> None:
        if self._closed:
            raise errors.PoolClosedError("this pubsub is closed")

    def _norm(self, name: Any) -> Any:
        return self.encoder.decode(self.encoder.encode(name))

    # ---- links -----------------------------------------------------------------------

    async def _open(self, name: str, sharded: bool) -> _Link:
        """A new link to node `name`: a dedicated connection and its reader task."""
        pool = self._state.state(name).pool.dedicated
        try:
            conn = await pool.acquire()
        except _CONN_ERRORS as e:
            self._note(Failure(failure_kind(e), name), e)
            raise
        link = _Link(name, sharded, pool, conn)
        if self._closed:
            self._close(link)
            self._check_open()
        link.reader = self._spawn(self._read(link))
        return link

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _close(self, link: _Link) -> None:
        """Stop reading `link` and close its connection (in a task aclose() waits for)."""
        if link.closed:
            return
        link.closed = True
        if self._shard.get(link.name) is link:
            del self._shard[link.name]
        if self._classic is link:
            self._classic = None
        reader = link.reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        self._spawn(self._dispose(link, reader))

    async def _dispose(self, link: _Link, reader: asyncio.Task[None] | None) -> None:
        if reader is not None and reader is not asyncio.current_task():
            await asyncio.gather(reader, return_exceptions=True)
        link.conn.broken = True  # a subscribed connection is never reused
        try:
            await close_connection(link.conn.connection)
        finally:
            link.pool.release(link.conn)

    def _lose(self, link: _Link, error: BaseException | None) -> None:
        """The link is gone: what it held waits to be resubscribed where it belongs now."""
        if link.closed:
            return
        for kind in (rules.CHANNEL, rules.PATTERN, rules.SHARD):
            self._lost[kind].update(link.held(kind))
        if not link.sharded:
            self._lost_classic_node = link.name
        self._close(link)
        if error is not None:
            self._note(Failure(failure_kind(error), link.name, sent=True), error)
        self._wake_keeper()

    def _orphan_shard(self, link: _Link, channels: Sequence[Any]) -> None:
        """These shard channels left `link`'s node; resubscribe them elsewhere."""
        held = link.subs[rules.SHARD]
        for ch in channels:
            if ch in held:
                self._lost[rules.SHARD][ch] = held.pop(ch)
        if link.idle():
            self._close(link)
        self._wake_keeper()

    def _note(self, failure: Failure, error: BaseException) -> None:
        """What a broken or redirected subscription tells the client about the cluster, as the policy says."""
        state = self._state
        if state.closed:
            return
        action = decide(failure, _FOREVER, now=time.monotonic(), backoff=self._backoff, readonly=True)
        if action.mark_failed:
            state.node_failed(failure.node, error)
        if action.repoint and isinstance(error, rx.MovedError):
            state.on_moved(error.slot_id, error.host, error.port)
        if action.refresh or action.repoint:
            state.request_refresh()

    # ---- reading ---------------------------------------------------------------------

    async def _read(self, link: _Link) -> None:
        """The link's reader: bookkeeping at once, everything else to the inbox."""
        conn = link.conn.connection
        try:
            while not link.closed:
                try:
                    response = await conn.read_response(timeout=math.inf, disconnect_on_error=False,
                                                        push_request=True)
                except rx.RedisError as e:
                    if not is_error_reply(e):
                        raise
                    if isinstance(e, rx.MovedError) and link.sharded:  # SSUBSCRIBE to a node that lost the slot
                        self._note(Failure(Kind.MOVED, link.name, sent=True, target=f"{e.host}:{e.port}"), e)
                        self._orphan_shard(link, [ch for ch in link.subs[rules.SHARD] if slot_of(ch) == e.slot_id])
                    else:
                        self._inbox.put(link, e)
                    continue
                self._received(link, response)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a broken connection: its subscriptions move
            self._lose(link, e)

    def _received(self, link: _Link, response: Any) -> None:
        ch = rules.server_unsubscribed(response, link.pending[rules.SHARD])
        if ch is not None:  # the node lost the slot (migration, demotion): resubscribe elsewhere
            self._orphan_shard(link, [ch])
            return
        if isinstance(response, list) and response:
            kind = str_if_bytes(response[0])
            if kind in rules.UNSUBSCRIBE_MESSAGE_TYPES:
                which = rules.kind_of(kind)
                if response[1] in link.pending[which]:
                    link.pending[which].discard(response[1])
                    link.subs[which].pop(response[1], None)
            elif kind == "smessage" and response[1] not in link.subs[rules.SHARD]:
                return  # moved to another node already: the copy from there is the one delivered
        self._inbox.put(link, response)
        if link.sharded and link.idle():
            self._close(link)

    async def get_message(self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0) -> Any:
        """The next message from any node, or None after `timeout` seconds (None: wait for ever)."""
        return await self._next(ignore_subscribe_messages, timeout, "")

    async def get_sharded_message(self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0,
                                  target_node: Any = None) -> Any:
        """As `get_message` (which also returns shard messages); `target_node` reads only that node's."""
        only = f"{target_node.host}:{target_node.port}" if target_node is not None else ""
        return await self._next(ignore_subscribe_messages, timeout, only)

    async def _next(self, ignore: bool, timeout: float | None, only: str, until_idle: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            item = self._inbox.take(only)
            if item is not None:
                msg = await self._handle(item, ignore)
                if msg is not None:
                    return msg
                continue
            if self._closed or (until_idle and not self.subscribed):
                return None
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            await self._inbox.wait(remaining)

    async def _handle(self, item: tuple[_Link, Any], ignore: bool) -> Any:
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
            return None
        if rules.hidden(msg["type"], ignore or self.ignore_subscribe_messages):
            return None
        return msg

    async def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        """redis-py's message dict for a raw reply (handlers of the classic link apply)."""
        link = self._classic or next(iter(self._shard.values()), None)
        if link is None:
            return None if response is None else rules.message_of(response)
        return None if response is None else await self._handle((link, response), ignore_subscribe_messages)

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

    async def _owner(self, key: Any, avoid: str = "") -> str:
        """The primary serving `key`'s slot now, unless it is `avoid` ("" when unknown)."""
        if key is None:
            return ""
        name = rules.shard_owner(await self._state.ensure(), key)
        return name if name != avoid else ""

    async def _classic_link(self, key: Any, avoid: str = "") -> _Link:
        if self._classic is not None:
            return self._classic
        topo = await self._state.ensure()
        if self._pinned and self._pinned not in topo.by_name:
            raise rx.RedisClusterException(f"Node {self._pinned} doesn't exist in the cluster")
        if key is not None and self._classic_key is None:
            self._classic_key = key
        key_owner = "" if self._pinned and self._pinned != avoid else await self._owner(self._classic_key, avoid)
        primaries = [p for p in topo.primaries if p.usable and p.name != avoid] or list(topo.primaries)
        down = self._state.node_states.down
        live = [p.name for p in primaries if p.name not in down] or [p.name for p in primaries]
        name = rules.classic_node(self._pinned, avoid, key_owner, live, random.choice)
        if not name:
            raise errors.SlotNotCoveredError("the cluster's map has no primary to subscribe on")
        self._classic = await self._open(name, sharded=False)
        return self._classic

    async def _classic_command(self, kind: str, command: str, subs: Mapping[Any, Any]) -> None:
        """(P)SUBSCRIBE on the classic link; on a broken connection its subscriptions move once, else raise."""
        self._check_open()
        async with self._lock:
            key = next(iter(subs), None)
            avoid = ""
            for attempt in range(2):
                try:
                    link = await self._classic_link(key, avoid)
                except _CONN_ERRORS:
                    if attempt:
                        raise
                    avoid = self._pinned or await self._owner(key)
                    await self._refresh()
                    continue
                normed = {self._norm(k): v for k, v in subs.items()}
                link.subs[kind].update(normed)  # before sending: the reader may see the confirmation first
                link.pending[kind].difference_update(normed)
                try:
                    await link.conn.send(command, *subs)
                    self._start_keeper()
                    return
                except _CONN_ERRORS as e:
                    self._lose(link, e)  # what the link held moves, these new ones with it
                    await self._recover()
                    if not any(k in self._lost[kind] for k in normed):
                        return
                    if attempt:
                        self._lost[kind] = rules.forget(self._lost[kind], list(subs), self._norm)
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
        async with self._lock:
            self._lost[kind] = rules.forget(self._lost[kind], names, self._norm)
            link = self._classic
            if link is None:
                return
            link.pending[kind].update([self._norm(n) for n in names] if names is not None else link.subs[kind])
            try:
                await link.conn.send(command, *(names or ()))
            except _CONN_ERRORS as e:
                self._lose(link, e)

    async def ping(self, message: Any = None) -> None:
        """PING on the classic connection (its reply comes back as a 'pong' message)."""
        self._check_open()
        async with self._lock:
            link = await self._classic_link(None)
            await link.conn.send(*(("PING", message) if message is not None else ("PING",)))

    async def execute_command(self, *args: Any) -> None:
        """Send a raw command on the classic connection (placed by args[1]'s slot if it has none yet)."""
        self._check_open()
        async with self._lock:
            link = await self._classic_link(args[1] if len(args) > 1 else None)
            await link.conn.send(*args)

    # ---- shard channels --------------------------------------------------------------

    async def ssubscribe(self, *args: Any, target_node: Any = None, **kwargs: Any) -> None:
        """SSUBSCRIBE each channel on its slot's primary, one channel at a time in the order given."""
        self._check_open()
        subs = parse_pubsub_subscriptions(args, kwargs)
        async with self._lock:
            for ch, handler in subs.items():
                try:
                    await self._ssubscribe_slot({ch: handler})
                except _CONN_ERRORS:
                    await self._refresh()  # owner unreachable: try the (maybe new) owner once, else raise
                    await self._ssubscribe_slot({ch: handler})
            self._start_keeper()

    async def _ssubscribe_slot(self, group: Mapping[Any, Any]) -> None:
        """SSUBSCRIBE channels of one slot on its owner (`SlotNotCoveredError` when the map has none)."""
        first = next(iter(group))
        owner = await self._owner(first)
        if not owner:
            await self._refresh()
            owner = await self._owner(first)
            if not owner:
                raise errors.SlotNotCoveredError(f"slot {slot_of(first)} is not served by any primary in the cluster's map")
        link = self._shard.get(owner)
        if link is None or link.closed:
            link = self._shard[owner] = await self._open(owner, sharded=True)
        normed = {self._norm(k): v for k, v in group.items()}
        link.subs[rules.SHARD].update(normed)
        link.pending[rules.SHARD].difference_update(normed)
        try:
            for ch in group:
                await link.conn.send("SSUBSCRIBE", ch)
        except _CONN_ERRORS as e:
            self._lose(link, e)
            self._lost[rules.SHARD] = rules.forget(self._lost[rules.SHARD], list(group), self._norm)
            raise

    async def sunsubscribe(self, *args: Any, target_node: Any = None) -> None:
        """SUNSUBSCRIBE each channel on the node holding it (every shard channel when none are given)."""
        names = list_or_args(args[0], args[1:]) if args else None
        async with self._lock:
            self._lost[rules.SHARD] = rules.forget(self._lost[rules.SHARD], names, self._norm)
            held = {name: list(link.subs[rules.SHARD]) for name, link in self._shard.items()}
            pending = [ch for link in self._shard.values() for ch in link.pending[rules.SHARD]]
            topo = self._state.topology
            plan = rules.plan_sunsubscribe(names, held, pending, lambda ch: rules.shard_owner(topo, ch), self._norm)
            for name, mine in plan.items():
                link = self._shard.get(name)
                if link is None or not mine:
                    continue
                link.pending[rules.SHARD].update(self._norm(ch) for ch in mine)
                try:
                    for ch in mine:
                        await link.conn.send("SUNSUBSCRIBE", ch)
                except _CONN_ERRORS as e:
                    self._lose(link, e)
                    self._lost[rules.SHARD] = rules.forget(self._lost[rules.SHARD], mine, self._norm)

    async def reinitialize_shard_subscriptions(self) -> None:
        """Move shard subscriptions whose slot has another owner in the current map now
        (this also happens by itself after any map change, MOVED or lost connection)."""
        async with self._lock:
            self._move_shards()
            await self._recover()

    on_slots_changed = reinitialize_shard_subscriptions

    # ---- keeping subscriptions where they belong --------------------------------------

    def _move_shards(self) -> None:
        topo = self._state.topology
        held = {name: list(link.held(rules.SHARD)) for name, link in self._shard.items()}
        for name, moved in rules.moved_shard_channels(held, lambda ch: rules.shard_owner(topo, ch)).items():
            self._orphan_shard(self._shard[name], moved)

    def _wake_keeper(self) -> None:
        self._kick.set()
        self._start_keeper()

    def _start_keeper(self) -> None:
        if self._keeper is None and not self._closed and not self._state.closed:
            self._keeper = asyncio.get_running_loop().create_task(self._keep(), name="clusterpool-async-pubsub")

    async def _keep(self) -> None:
        """Resubscribe orphans after a map change, a kick, or the backoff after a failed attempt."""
        state = self._state
        budget = _FOREVER
        delay: float | None = None
        while not self._closed and not state.closed:
            t = state.topology
            await self._wait(t.version if t is not None else 0, delay)
            if self._closed or state.closed:
                return
            async with self._lock:
                self._move_shards()
                ok = await self._recover(refresh=budget.failures > 0 or bool(self._lost[rules.SHARD]))
            self._kick.clear()  # our own failed attempts kicked too: wait out the backoff instead
            if ok:
                # orphaned while we were resubscribing: go again at once
                budget, delay = _FOREVER, (0.0 if self._orphans() else None)
            else:
                action = decide(Failure(Kind.CONNECTION, ""), budget, now=time.monotonic(), backoff=self._backoff,
                                readonly=True)
                budget, delay = action.budget, action.delay

    async def _wait(self, version: int, delay: float | None) -> None:
        """Until kicked, the map changes from `version`, or `delay` s pass (then clear the kick)."""
        if not self._kick.is_set():
            kick = asyncio.ensure_future(self._kick.wait())
            change = asyncio.ensure_future(self._state.wait_for_change(version, delay or _IDLE_WAIT))
            try:
                await asyncio.wait((kick, change), timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for f in (kick, change):
                    f.cancel()
                await asyncio.gather(kick, change, return_exceptions=True)
        self._kick.clear()

    async def _refresh(self) -> None:
        try:
            await self._state.refresh_now()
        except errors.PoolClosedError:
            raise
        except Exception:  # noqa: BLE001 - a failed refresh keeps the current map; the attempts decide
            pass

    async def _recover(self, refresh: bool = True) -> bool:
        """Resubscribe orphans where the current map puts them; whether all of them found a node."""
        if not self._orphans() or self._closed:
            return True
        if refresh:
            await self._refresh()
        ok = True
        if self._lost[rules.CHANNEL] or self._lost[rules.PATTERN]:
            ok = await self._recover_classic()
        lost, self._lost[rules.SHARD] = self._lost[rules.SHARD], {}
        for group in rules.by_slot(lost).values():
            try:
                await self._ssubscribe_slot(group)
            except (*_CONN_ERRORS, errors.SlotNotCoveredError, errors.PoolTimeoutError):
                self._lost[rules.SHARD].update(group)
                ok = False
        return ok

    async def _recover_classic(self) -> bool:
        chans, pats = self._lost[rules.CHANNEL], self._lost[rules.PATTERN]
        topo = self._state.topology
        others = [p.name for p in (topo.primaries if topo else ()) if p.usable]
        random.shuffle(others)
        key_owner = "" if self._pinned else await self._owner(self._classic_key)
        for name in rules.classic_candidates(self._pinned, key_owner, self._lost_classic_node, others):
            try:
                link = await self._open(name, sharded=False)
            except (*_CONN_ERRORS, errors.PoolTimeoutError):
                continue
            link.subs[rules.CHANNEL].update(chans)
            link.subs[rules.PATTERN].update(pats)
            try:
                if chans:
                    await link.conn.send("SUBSCRIBE", *chans)
                if pats:
                    await link.conn.send("PSUBSCRIBE", *pats)
            except _CONN_ERRORS:
                link.subs[rules.CHANNEL].clear()
                link.subs[rules.PATTERN].clear()
                self._close(link)
                continue
            self._classic = link
            self._lost[rules.CHANNEL], self._lost[rules.PATTERN] = {}, {}
            self._lost_classic_node = ""
            return True
        return False

    # ---- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Unsubscribe from everything by closing every connection; waits for every task. Idempotent."""
        self._closed = True
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        for link in self._links():
            self._close(link)
        self._lost = {rules.CHANNEL: {}, rules.PATTERN: {}, rules.SHARD: {}}
        self._inbox.wake()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    close = aclose
    reset = aclose

    async def __aenter__(self) -> ClusterPubSub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        moving = sum(len(v) for v in self._lost.values())
        return (f"<clusterpool.asyncio.ClusterPubSub classic={self._classic.name if self._classic else None} "
                f"sharded={sorted(self._shard)} moving={moving}{' closed' if self._closed else ''}>")

