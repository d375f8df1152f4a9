"""Pub/sub over a Redis Cluster: `client.pubsub()` returns a `ClusterPubSub`.

It has redis-py's PubSub interface (subscribe/psubscribe/unsubscribe/
punsubscribe, ssubscribe/sunsubscribe, get_message, get_sharded_message,
listen, run_in_thread, ping, close, context manager) and returns redis-py's
message dicts ({'type', 'pattern', 'channel', 'data'}).

How this works: every connection is held by a plain `redis.client.PubSub`
(a "node subscriber") on a private one-node `redis.ConnectionPool`, so
redis-py's own code parses messages, keeps handlers and resubscribes after a
reconnect. This object only decides which node each subscription lives on and
multiplexes reads over the node subscribers with `select`.

Choices:

* Classic SUBSCRIBE/PSUBSCRIBE go through ONE node subscriber, as in
  RedisCluster: on the node given to `pubsub(node=)` / `pubsub(host=, port=)`,
  else on the primary owning the key slot of the first channel subscribed.
  `client.publish()` routes by the same slot, so its receiver count (which
  Redis counts per node) includes this subscriber; a PUBLISH still reaches
  every node over the cluster bus. When the connection breaks we try the
  first channel's owner in the refreshed map, then the same node (a restart
  or blip), then any other primary.
* SSUBSCRIBE routes each channel by its slot to the slot's primary, one
  SSUBSCRIBE per channel in the order given (so the confirmations carry the
  same counts as RedisCluster's) and one node subscriber (one connection)
  per owner node. A sharded subscription is
  "orphaned" when its owner's connection breaks, when the server itself sends
  `sunsubscribe` (Redis does so when a node loses the slot, e.g. a primary
  demoted by a failover), or when SSUBSCRIBE is answered with MOVED. Orphans
  are resubscribed on the slot's new owner (after
  `client.core.refresher.refresh_now()`) from inside `get_message` /
  `listen`, with exponential backoff while no owner answers. The
  server-initiated `sunsubscribe` is swallowed: for the caller the
  subscription continues; the re-subscription produces a new `ssubscribe`
  confirmation (as redis-py's reconnect does), which
  `ignore_subscribe_messages` hides.
* Messages published while a subscription is being moved are lost: pub/sub
  has no history (use streams when that matters).
* Connections are not taken from the client's command pools (a subscribed
  connection cannot run commands); they carry the client's connection options
  (`client_name`, credentials, TLS, `decode_responses`, protocol). `close()`
  closes all of them; closing the client does not close its pubsub objects.
* Recovery happens on the reading thread; a `get_message(timeout=t)` that
  performs a recovery may take longer than `t` (a refresh is bounded by the
  client's refresh timeout per node).
"""

from __future__ import annotations

import random
import select
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.client import PubSub, PubSubWorkerThread
from redis.commands.helpers import list_or_args, parse_pubsub_subscriptions, pubsub_subscription_args
from redis.retry import Retry

from . import errors, subscriptions
from .connection import NodeConnection, SSLNodeConnection
from .policy import Budget, Failure, Kind, decide, failure_kind
from .slots import slot_of
from .topology import Node

if TYPE_CHECKING:
    from .dispatch import Dispatcher

_CONN_ERRORS = (rx.ConnectionError, rx.TimeoutError, OSError)
# subscriptions are retried until they are closed: a budget that is never spent
_FOREVER = Budget(max_redirections=2**31, retries=2**31)
_MAX_WAIT = 0.5  # longest single select(), so recovery and newly added connections are noticed


class _NodeSub:
    """One connection to one node: a redis-py PubSub on a private one-node pool."""

    def __init__(self, owner: ClusterPubSub, name: str, sharded: bool) -> None:
        host, _, port = name.rpartition(":")
        core = owner._client.core
        kwargs = dict(core.conn_kwargs)
        kwargs.update(
            host=host,
            port=int(port),
            retry=Retry(NoBackoff(), 0),  # failures come back to us: we decide where to go next
            connection_class=SSLNodeConnection if core.config.ssl else NodeConnection,
        )
        self.name = name
        self.sharded = sharded
        self.pool = redis.ConnectionPool(**kwargs)
        self.ps = PubSub(self.pool, ignore_subscribe_messages=owner.ignore_subscribe_messages,
                         push_handler_func=owner._push_handler_func)

    def sock(self) -> Any:
        conn = self.ps.connection
        return None if conn is None else conn._sock

    def idle(self) -> bool:
        """Nothing subscribed and no unsubscribe confirmation still to come."""
        ps = self.ps
        return not (ps.channels or ps.patterns or ps.shard_channels or ps.pending_unsubscribe_channels
                    or ps.pending_unsubscribe_patterns or ps.pending_unsubscribe_shard_channels)

    def close(self) -> None:
        try:
            self.ps.reset()
        finally:
            self.pool.disconnect()


class ClusterPubSub:
    """redis-py's PubSub interface over a cluster; see the module docstring for routing and failover."""

    PUBLISH_MESSAGE_TYPES = PubSub.PUBLISH_MESSAGE_TYPES
    HEALTH_CHECK_MESSAGE = PubSub.HEALTH_CHECK_MESSAGE
    UNSUBSCRIBE_MESSAGE_TYPES = PubSub.UNSUBSCRIBE_MESSAGE_TYPES

    def __init__(self, client: Dispatcher, node: Any = None, host: str | None = None, port: int | None = None,
                 ignore_subscribe_messages: bool = False, push_handler_func: Any = None, **kwargs: Any) -> None:
        unknown = set(kwargs) - {"encoder", "event_dispatcher", "shard_hint"}
        if unknown:
            raise errors.ConfigurationError(f"unknown pubsub option(s): {', '.join(sorted(unknown))}")
        self._client = client
        self._pinned = ""  # node name from node= / host=, port=: classic subscriptions go there
        self.set_pubsub_node(client, node, host, port)
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self._push_handler_func = push_handler_func
        self._lock = threading.RLock()
        self._classic: _NodeSub | None = None
        self._shard: dict[str, _NodeSub] = {}  # owner node name -> its node subscriber
        # subscriptions waiting for a node: name -> handler
        self._lost_channels: dict[Any, Any] = {}
        self._lost_patterns: dict[Any, Any] = {}
        self._lost_shard: dict[Any, Any] = {}
        self._lost_classic_node = ""  # classic node whose connection broke (tried again)
        self._classic_key: Any = None  # the first channel or pattern: its slot's owner holds the classic connection
        self._budget = _FOREVER  # resubscribe attempts: subscriptions never give up
        self._next_attempt = 0.0
        self._rotation = 0
        self._closed = False
        self.subscribed_event = threading.Event()
        client.core.closables.add(self)  # client.close() closes this pubsub too

    # ---------------------------------------------------------------- state

    def _subs(self) -> list[_NodeSub]:
        subs = list(self._shard.values())
        if self._classic is not None:
            subs.append(self._classic)
        return subs

    def _orphans(self) -> bool:
        return bool(self._lost_channels or self._lost_patterns or self._lost_shard)

    @property
    def channels(self) -> dict[Any, Any]:
        out = dict(self._lost_channels)
        if self._classic is not None:
            out.update(self._classic.ps.channels)
        return out

    @property
    def patterns(self) -> dict[Any, Any]:
        out = dict(self._lost_patterns)
        if self._classic is not None:
            out.update(self._classic.ps.patterns)
        return out

    @property
    def shard_channels(self) -> dict[Any, Any]:
        out = dict(self._lost_shard)
        for sub in self._shard.values():
            out.update(sub.ps.shard_channels)
        return out

    @property
    def subscribed(self) -> bool:
        """True while any channel, pattern or shard channel is subscribed (or being moved)."""
        return self._orphans() or any(s.ps.subscribed for s in self._subs())

    def nodes(self) -> dict[str, list[str]]:
        """Which node each kind of subscription is on now: {"classic": [...], "sharded": [...]}."""
        return {"classic": [self._classic.name] if self._classic else [], "sharded": sorted(self._shard)}

    def set_pubsub_node(self, cluster: Any, node: Any = None, host: str | None = None,
                        port: int | None = None) -> None:
        """Pin classic subscriptions to a node (RedisCluster's errors for a missing or unknown one)."""
        if node is not None:
            host, port = node.host, node.port
        elif host is None and port is None:
            self._pinned = ""
            return
        elif host is None or port is None:
            raise rx.DataError("Passing a host requires passing a port, and vice versa")
        name = f"{host}:{port}"
        if name not in self._client.core.ensure().by_name:
            raise rx.RedisClusterException(f"Node {host}:{port} doesn't exist in the cluster")
        self._pinned = name

    def get_pubsub_node(self) -> Node | None:
        """The node holding the classic subscriptions (None before the first one, unless pinned)."""
        name = self._classic.name if self._classic is not None else self._pinned
        topo = self._client.core.topology
        return topo.by_name.get(name) if name and topo is not None else None

    def _check_open(self) -> None:
        if self._closed:
            raise errors.PoolClosedError("this pubsub is closed")

    def _mark_subscribed(self) -> None:
        self.subscribed_event.set()

    # ---------------------------------------------------------------- classic

    def _classic_sub(self, avoid: str = "", key: Any = None) -> _NodeSub:
        if self._classic is None:
            if key is not None and self._classic_key is None:
                self._classic_key = key
            key_owner = "" if self._pinned and self._pinned != avoid else self._owner_of(self._classic_key, avoid)
            topo = self._client.core.ensure()
            primaries = [p for p in topo.primaries if p.usable and p.name != avoid] or list(topo.primaries)
            down = self._client.core.node_states.down
            alive = [p.name for p in primaries if p.name not in down] or [p.name for p in primaries]
            name = subscriptions.classic_node(self._pinned, avoid, key_owner, alive, random.choice)
            if not name:
                raise errors.SlotNotCoveredError("the cluster's map has no primary to subscribe on")
            self._classic = _NodeSub(self, name, sharded=False)
        return self._classic

    def _owner_of(self, key: Any, avoid: str = "") -> str:
        """The primary serving `key`'s slot now, unless it is `avoid` ("" when unknown)."""
        if key is None:
            return ""
        client = self._client
        try:
            name = client.pick_node(client.core.ensure(), slot_of(key), False).name
        except (errors.SlotNotCoveredError, errors.NodeUnavailableError):
            return ""
        return name if name != avoid else ""

    def _classic_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run a classic (un)subscribe; on a broken connection move to another node once, then raise."""
        key = None
        if method in ("subscribe", "psubscribe"):
            key = next(iter(parse_pubsub_subscriptions(args, kwargs)), None)
        for attempt in range(2):
            sub = self._classic_sub(avoid=self._lost_classic_node if attempt else "", key=key)
            try:
                return getattr(sub.ps, method)(*args, **kwargs)
            except _CONN_ERRORS:
                self._drop_classic(sub, keep=True)
                self._client.core.refresher.refresh_now()
                if attempt:
                    raise
                # resubscribe what the old node had, then retry this call there
                self._recover(force=True)
        raise AssertionError("unreachable")

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        """SUBSCRIBE on this object's classic node (any node receives every PUBLISH)."""
        self._check_open()
        with self._lock:
            self._classic_call("subscribe", *args, **kwargs)
            self._mark_subscribed()

    def psubscribe(self, *args: Any, **kwargs: Any) -> None:
        """PSUBSCRIBE on this object's classic node."""
        self._check_open()
        with self._lock:
            self._classic_call("psubscribe", *args, **kwargs)
            self._mark_subscribed()

    def unsubscribe(self, *args: Any) -> None:
        with self._lock:
            self._forget(self._lost_channels, args)
            if self._classic is not None:
                self._classic_call("unsubscribe", *args)

    def punsubscribe(self, *args: Any) -> None:
        with self._lock:
            self._forget(self._lost_patterns, args)
            if self._classic is not None:
                self._classic_call("punsubscribe", *args)

    def _forget(self, lost: dict[Any, Any], args: tuple[Any, ...]) -> None:
        kept = subscriptions.forget(lost, list_or_args(args[0], args[1:]) if args else None, self._norm)
        lost.clear()
        lost.update(kept)

    def _norm(self, name: Any) -> Any:
        enc = self._encoder()
        return enc.decode(enc.encode(name))

    def _encoder(self) -> Any:
        kw = self._client.core.conn_kwargs
        return redis.connection.Encoder(kw.get("encoding", "utf-8"), kw.get("encoding_errors", "strict"),
                                        kw.get("decode_responses", False))

    # ---------------------------------------------------------------- sharded

    def ssubscribe(self, *args: Any, target_node: Any = None, **kwargs: Any) -> None:
        """SSUBSCRIBE each channel on its slot's primary (one SSUBSCRIBE per slot)."""
        self._check_open()
        subs = parse_pubsub_subscriptions(args, kwargs)
        with self._lock:
            for ch, handler in subs.items():
                try:
                    self._ssubscribe_slot(slot_of(ch), {ch: handler})
                except _CONN_ERRORS:
                    # owner unreachable: refresh once and try the (maybe new) owner, else raise
                    self._client.core.refresher.refresh_now()
                    self._ssubscribe_slot(slot_of(ch), {ch: handler})
            self._mark_subscribed()

    def _ssubscribe_slot(self, slot: int, group: dict[Any, Any]) -> None:
        client = self._client
        topo = client.core.ensure()
        owner = client.pick_node(topo, slot, False).name
        sub = self._shard.get(owner)
        if sub is None:
            sub = self._shard[owner] = _NodeSub(self, owner, sharded=True)
        try:
            sub.ps.ssubscribe(*pubsub_subscription_args(group))
        except _CONN_ERRORS as e:
            self._drop_shard(sub, e)
            for ch in group:  # not subscribed: the caller (or recovery) decides what next
                self._lost_shard.pop(self._norm(ch), None)
            raise

    def sunsubscribe(self, *args: Any, target_node: Any = None) -> None:
        """SUNSUBSCRIBE each channel on the node holding it (every shard channel when none are given),
        one channel at a time in order, as RedisCluster does, so the confirmations' counts match."""
        with self._lock:
            self._forget(self._lost_shard, args)
            names = list_or_args(args[0], args[1:]) if args else None
            held = {name: list(sub.ps.shard_channels) for name, sub in self._shard.items()}
            pending = [ch for sub in self._shard.values() for ch in sub.ps.pending_unsubscribe_shard_channels]
            per_node = subscriptions.plan_sunsubscribe(names, held, pending, self._owner_of, self._norm)
            for name, mine in per_node.items():
                sub = self._shard[name]
                if not mine:
                    continue
                try:
                    for ch in mine:
                        sub.ps.sunsubscribe(ch)
                except _CONN_ERRORS as e:
                    self._drop_shard(sub, e)
                    self._forget(self._lost_shard, tuple(mine))
                    if names is None:
                        self._lost_shard.clear()

    # ---------------------------------------------------------------- losing and recovering

    def _drop_classic(self, sub: _NodeSub, keep: bool) -> None:
        """Forget the classic connection; with `keep`, its subscriptions wait to be resubscribed."""
        if keep:
            self._lost_channels.update(sub.ps.channels)
            self._lost_patterns.update(sub.ps.patterns)
            for ch in sub.ps.pending_unsubscribe_channels:
                self._lost_channels.pop(ch, None)
            for p in sub.ps.pending_unsubscribe_patterns:
                self._lost_patterns.pop(p, None)
            self._lost_classic_node = sub.name
        if self._classic is sub:
            self._classic = None
        _quiet_close(sub)

    def _drop_shard(self, sub: _NodeSub, error: BaseException | None) -> None:
        """The owner connection is gone: its shard channels wait for the slot's (new) owner."""
        ps = sub.ps
        for ch, handler in ps.shard_channels.items():
            if ch not in ps.pending_unsubscribe_shard_channels:
                self._lost_shard[ch] = handler
        if self._shard.get(sub.name) is sub:
            del self._shard[sub.name]
        _quiet_close(sub)
        if error is not None:
            self._failed(Failure(failure_kind(error), sub.name, sent=True), error)
        self._next_attempt = 0.0

    def _failed(self, failure: Failure, error: BaseException) -> None:
        """What a broken or redirected subscription tells the client about the cluster, as the
        policy says (mark the node, repoint the slot); moving the subscriptions is ours."""
        client = self._client
        action = decide(failure, _FOREVER, now=time.monotonic(), backoff=client.backoff_delay, readonly=True)
        client.note_failure(action, failure, client.core.state(failure.node), error)

    def _lose(self, sub: _NodeSub, error: BaseException) -> None:
        if sub.sharded:
            self._drop_shard(sub, error)
        else:
            self._drop_classic(sub, keep=True)
            self._next_attempt = 0.0

    def _orphan_shard_channels(self, sub: _NodeSub, channels: list[Any]) -> None:
        ps = sub.ps
        for ch in channels:
            if ch in ps.shard_channels:
                self._lost_shard[ch] = ps.shard_channels.pop(ch)
        if not (ps.channels or ps.patterns or ps.shard_channels):
            ps.subscribed_event.clear()
        if sub.idle() and self._shard.get(sub.name) is sub:
            del self._shard[sub.name]
            _quiet_close(sub)
        self._next_attempt = 0.0

    def _recover(self, force: bool = False) -> None:
        """Resubscribe orphaned subscriptions where they belong now (backoff between failed attempts)."""
        if not self._orphans():
            return
        now = time.monotonic()
        if not force and now < self._next_attempt:
            return
        core = self._client.core
        failed = False
        if self._budget.failures or self._lost_shard:
            try:
                core.refresher.refresh_now()
            except Exception:  # a failed refresh keeps the current map; the attempts below decide
                pass
        if self._lost_channels or self._lost_patterns:
            failed |= not self._recover_classic()
        if self._lost_shard:
            lost, self._lost_shard = self._lost_shard, {}
            for slot, group in subscriptions.by_slot(lost).items():
                try:
                    self._ssubscribe_slot(slot, group)
                except (*_CONN_ERRORS, errors.SlotNotCoveredError):
                    self._lost_shard.update(group)
                    failed = True
        if failed:  # the next attempt after the policy's backoff (it cannot be spent: see _FOREVER)
            now = time.monotonic()
            action = decide(Failure(Kind.CONNECTION, ""), self._budget, now=now,
                            backoff=self._client.backoff_delay, readonly=True)
            self._budget = action.budget
            self._next_attempt = now + action.delay
        else:
            self._budget = _FOREVER

    def reinitialize_shard_subscriptions(self) -> None:
        """Move shard subscriptions whose slot has another owner in the current map now
        (this also happens by itself on MOVED, a server-sent sunsubscribe or a broken connection)."""
        with self._lock:
            held = {name: list(sub.ps.shard_channels) for name, sub in self._shard.items()}
            for name, moved in subscriptions.moved_shard_channels(held, self._owner_of).items():
                self._orphan_shard_channels(self._shard[name], moved)
            self._recover(force=True)

    on_slots_changed = reinitialize_shard_subscriptions

    def _recover_classic(self) -> bool:
        chans, pats = self._lost_channels, self._lost_patterns
        previous = self._lost_classic_node
        # the pinned node, else the first channel's owner in the (refreshed) map, then the same node
        topo = self._client.core.topology
        others = [p.name for p in (topo.primaries if topo else ()) if p.usable]
        random.shuffle(others)
        key_owner = "" if self._pinned else self._owner_of(self._classic_key)
        for name in subscriptions.classic_candidates(self._pinned, key_owner, previous, others):
            sub = _NodeSub(self, name, sharded=False)
            try:
                if chans:
                    sub.ps.subscribe(*pubsub_subscription_args(chans))
                if pats:
                    sub.ps.psubscribe(*pubsub_subscription_args(pats))
            except _CONN_ERRORS:
                _quiet_close(sub)
                continue
            self._classic = sub
            self._lost_channels, self._lost_patterns = {}, {}
            self._lost_classic_node = ""
            return True
        return False

    # ---------------------------------------------------------------- reading

    def _handle(self, sub: _NodeSub, response: Any, ignore: bool) -> Any:
        ch = subscriptions.server_unsubscribed(response, sub.ps.pending_unsubscribe_shard_channels)
        if ch is not None:
            # the server unsubscribed us (slot moved away / node demoted): resubscribe elsewhere
            self._orphan_shard_channels(sub, [ch])
            return None
        msg = sub.ps.handle_message(response, ignore or self.ignore_subscribe_messages)
        if sub.sharded and sub.idle() and self._shard.get(sub.name) is sub:
            del self._shard[sub.name]
            _quiet_close(sub)
        return msg

    def _poll_once(self, ignore: bool, only: str = "") -> tuple[bool, Any]:
        """Read at most one response from each connection (or node `only`'s) without blocking:
        (anything read, message)."""
        subs = [s for s in self._subs() if s.name == only] if only else self._subs()
        if not subs:
            return False, None
        self._rotation = (self._rotation + 1) % len(subs)
        got = False
        for sub in subs[self._rotation:] + subs[:self._rotation]:
            if sub.ps.connection is None:
                continue
            try:
                response = sub.ps.parse_response(block=False, timeout=0)
            except rx.MovedError as e:
                got = True
                self._failed(Failure(Kind.MOVED, sub.name, sent=True, target=f"{e.host}:{e.port}"), e)
                self._orphan_shard_channels(
                    sub, [ch for ch in sub.ps.shard_channels if slot_of(ch) == e.slot_id])
                continue
            except _CONN_ERRORS as e:
                got = True
                self._lose(sub, e)
                continue
            if response is None:
                continue
            got = True
            msg = self._handle(sub, response, ignore)
            if msg is not None:
                return True, msg
        return got, None

    def get_message(self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0) -> Any:
        """The next message from any node, or None after `timeout` seconds (None: wait forever)."""
        return self._next_message(ignore_subscribe_messages, timeout, "")

    def get_sharded_message(self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0,
                            target_node: Any = None) -> Any:
        """As `get_message` (which also returns shard messages); `target_node` reads only that node's."""
        only = f"{target_node.host}:{target_node.port}" if target_node is not None else ""
        return self._next_message(ignore_subscribe_messages, timeout, only)

    def _next_message(self, ignore_subscribe_messages: bool, timeout: float | None, only: str) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        # as redis-py: with nothing subscribed, wait for another thread to subscribe
        if not self.subscribed and not self._subs() and not self.subscribed_event.wait(timeout):
            return None
        while not self._closed:
            with self._lock:
                self._recover()
                got, msg = self._poll_once(ignore_subscribe_messages, only)
                if msg is not None:
                    return msg
                socks = [s for s in (sub.sock() for sub in self._subs() if not only or sub.name == only)
                         if s is not None]
                orphans = self._orphans()
                if not socks and not orphans and not self._subs():
                    return None
            if got:
                continue
            wait = _MAX_WAIT if deadline is None else min(_MAX_WAIT, deadline - time.monotonic())
            if orphans:
                wait = min(wait, max(self._next_attempt - time.monotonic(), 0.0))
            if wait <= 0 and deadline is not None and time.monotonic() >= deadline:
                return None
            if socks:
                try:
                    select.select(socks, [], [], max(wait, 0.0))
                except (OSError, ValueError):  # a socket closed by another thread: look again
                    pass
            elif wait > 0:
                time.sleep(wait)
        return None

    def listen(self) -> Iterator[Any]:
        """Messages as they arrive, while anything is subscribed."""
        while self.subscribed and not self._closed:
            msg = self.get_message(timeout=None if self._subs() else _MAX_WAIT)
            if msg is not None:
                yield msg

    def execute_command(self, *args: Any) -> None:
        """Send a raw command on the classic connection (placed by args[1]'s slot if it has none yet)."""
        self._check_open()
        with self._lock:
            sub = self._classic_sub(key=args[1] if len(args) > 1 else None)
            sub.ps.execute_command(*args)

    def ping(self, message: Any = None) -> Any:
        """PING on the classic connection (its reply comes back as a 'pong' message)."""
        with self._lock:
            return self._classic_call("ping", message)

    def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        sub = self._classic or next(iter(self._shard.values()), None)
        if sub is None:
            sub = self._classic_sub()
        return sub.ps.handle_message(response, ignore_subscribe_messages)

    def run_in_thread(self, sleep_time: float = 0.0, daemon: bool = False, exception_handler: Any = None,
                      pubsub: Any = None, sharded_pubsub: bool = False) -> PubSubWorkerThread:
        """redis-py's worker thread: every subscription needs a handler."""
        missing = subscriptions.missing_handler(self.channels, self.patterns, self.shard_channels)
        if missing is not None:
            raise missing
        thread = PubSubWorkerThread(self if pubsub is None else pubsub, sleep_time, daemon=daemon,
                                    exception_handler=exception_handler, sharded_pubsub=sharded_pubsub)
        thread.start()
        return thread

    # ---------------------------------------------------------------- lifecycle

    def reset(self) -> None:
        """Unsubscribe from everything by closing every connection."""
        with self._lock:
            subs = self._subs()
            self._classic, self._shard = None, {}
            self._lost_channels, self._lost_patterns, self._lost_shard = {}, {}, {}
            self._lost_classic_node = ""
            self.subscribed_event.clear()
        for sub in subs:
            _quiet_close(sub)

    def disconnect(self) -> None:
        """Close the sockets but keep the subscriptions: the next read reconnects and resubscribes."""
        with self._lock:
            for sub in self._subs():
                if sub.ps.connection is not None:
                    sub.ps.connection.disconnect()

    def close(self) -> None:
        """Close every connection of this pubsub; it cannot be used afterwards."""
        self._closed = True
        self.reset()

    def __enter__(self) -> ClusterPubSub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.reset()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"<ClusterPubSub classic={self._classic.name if self._classic else None} "
                f"sharded={sorted(self._shard)} moving={len(self._lost_shard) + len(self._lost_channels)}>")


def _quiet_close(sub: _NodeSub) -> None:
    try:
        sub.close()
    except Exception:
        pass
