"""Pub/sub over a Redis Cluster: `client.pubsub()` returns a `ClusterPubSub`.

It has redis-py's PubSub interface (subscribe/psubscribe/unsubscribe/
punsubscribe, ssubscribe/sunsubscribe, get_message, get_sharded_message,
listen, run_in_thread, ping, close, context manager) and returns redis-py's
message dicts ({'type', 'pattern', 'channel', 'data'}).

How this works: every connection is held by a plain `redis.client.PubSub`
(a "node subscriber", sublinks.py) on a private one-node
`redis.ConnectionPool`, so redis-py's own code parses messages, keeps handlers
and resubscribes after a reconnect. sublinks.py places and moves the
subscriptions (as subscriptions.py decides); this object is the redis-py
surface and multiplexes reads over the node subscribers with `select`.

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
  closes all of them; closing the client closes its pubsub objects too.
* Recovery happens on the reading thread; a `get_message(timeout=t)` that
  performs a recovery may take longer than `t` (a refresh is bounded by the
  client's refresh timeout per node).
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
from redis.client import PubSub, PubSubWorkerThread

from ._redispy import list_or_args, parse_pubsub_subscriptions
from . import errors, subscriptions
from .sublinks import CONN_ERRORS, NodeSubs, quiet_close
from .slots import slot_of

if TYPE_CHECKING:
    from .interfaces import Dispatcher
    from .nodeapi import ClusterNode

_MAX_WAIT = 0.5  # longest single select(), so recovery and newly added connections are noticed


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
        self._n = NodeSubs(client, ignore_subscribe_messages, push_handler_func)
        self.set_pubsub_node(client, node, host, port)
        self._lock = threading.RLock()
        self._closed = False
        self.subscribed_event = threading.Event()
        client.core.closables.add(self)  # client.close() closes this pubsub too

    @property
    def ignore_subscribe_messages(self) -> bool:
        return self._n.ignore_subscribe_messages

    @ignore_subscribe_messages.setter
    def ignore_subscribe_messages(self, value: bool) -> None:
        self._n.ignore_subscribe_messages = value

    @property
    def channels(self) -> dict[Any, Any]:
        out = dict(self._n.lost_channels)
        if self._n.classic is not None:
            out.update(self._n.classic.ps.channels)
        return out

    @property
    def patterns(self) -> dict[Any, Any]:
        out = dict(self._n.lost_patterns)
        if self._n.classic is not None:
            out.update(self._n.classic.ps.patterns)
        return out

    @property
    def shard_channels(self) -> dict[Any, Any]:
        out = dict(self._n.lost_shard)
        for sub in self._n.shard.values():
            out.update(sub.ps.shard_channels)
        return out

    @property
    def pending_unsubscribe_channels(self) -> set[Any]:
        """Channels whose UNSUBSCRIBE is sent but not confirmed yet (redis-py's PubSub attribute)."""
        return set(self._n.classic.ps.pending_unsubscribe_channels) if self._n.classic is not None else set()

    @property
    def pending_unsubscribe_patterns(self) -> set[Any]:
        """Patterns whose PUNSUBSCRIBE is sent but not confirmed yet."""
        return set(self._n.classic.ps.pending_unsubscribe_patterns) if self._n.classic is not None else set()

    @property
    def pending_unsubscribe_shard_channels(self) -> set[Any]:
        """Shard channels whose SUNSUBSCRIBE is sent but not confirmed yet, on any node."""
        return {ch for sub in self._n.shard.values() for ch in sub.ps.pending_unsubscribe_shard_channels}

    @property
    def subscribed(self) -> bool:
        """True while any channel, pattern or shard channel is subscribed (or being moved)."""
        return self._n.orphans() or any(s.ps.subscribed for s in self._n.subs())

    def nodes(self) -> dict[str, list[str]]:
        """Which node each kind of subscription is on now: {"classic": [...], "sharded": [...]}."""
        return {"classic": [self._n.classic.name] if self._n.classic else [], "sharded": sorted(self._n.shard)}

    def set_pubsub_node(self, cluster: Any, node: Any = None, host: str | None = None,
                        port: int | None = None) -> None:
        """Pin classic subscriptions to a node (RedisCluster's errors for a missing or unknown one)."""
        name = subscriptions.pinned_name(node, host, port)
        if name:
            subscriptions.check_pinned(self._client.core.ensure(), name)
        self._n.pinned = name

    @property
    def node(self) -> ClusterNode | None:
        """RedisCluster's `node` attribute: `get_pubsub_node()`."""
        return self.get_pubsub_node()

    def get_pubsub_node(self) -> ClusterNode | None:
        """The node holding the classic subscriptions, as RedisCluster's node object (None before
        the first subscribe, unless pinned)."""
        name = self._n.classic.name if self._n.classic is not None else self._n.pinned
        return self._client.get_node(node_name=name) if name else None

    def get_redis_connection(self) -> redis.Redis | None:
        """RedisCluster's: the client's redis.Redis for the classic node (`get_pubsub_node()`'s
        `redis_connection`), None before there is one. It runs ordinary commands on that node;
        the subscribed connection is this pubsub's own and is never handed out."""
        node = self.get_pubsub_node()
        return None if node is None else node.redis_connection

    def _check_open(self) -> None:
        if self._closed:
            raise errors.PoolClosedError("this pubsub is closed")

    def _mark_subscribed(self) -> None:
        self.subscribed_event.set()

    def _classic_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run a classic (un)subscribe; on a broken connection move to another node once, then raise."""
        key = None
        if method in ("subscribe", "psubscribe"):
            key = next(iter(parse_pubsub_subscriptions(args, kwargs)), None)
        for attempt in range(2):
            sub = self._n.classic_sub(avoid=self._n.lost_classic_node if attempt else "", key=key)
            try:
                return getattr(sub.ps, method)(*args, **kwargs)
            except CONN_ERRORS:
                self._n.drop_classic(sub, keep=True)
                self._client.core.refresher.refresh_now()
                if attempt:
                    raise
                # resubscribe what the old node had, then retry this call there
                self._n.recover(force=True)
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
            self._n.forget(self._n.lost_channels, args)
            if self._n.classic is not None:
                self._classic_call("unsubscribe", *args)

    def punsubscribe(self, *args: Any) -> None:
        with self._lock:
            self._n.forget(self._n.lost_patterns, args)
            if self._n.classic is not None:
                self._classic_call("punsubscribe", *args)

    def ssubscribe(self, *args: Any, target_node: Any = None, **kwargs: Any) -> None:
        """SSUBSCRIBE each channel on its slot's primary (one SSUBSCRIBE per slot)."""
        self._check_open()
        subs = parse_pubsub_subscriptions(args, kwargs)
        deadline = self._client.deadline()  # retry_timeout bounds the whole call
        with self._lock:
            for ch, handler in subs.items():
                try:
                    self._n.ssubscribe_slot(slot_of(ch), {ch: handler}, deadline)
                except CONN_ERRORS as e:
                    if isinstance(e, errors.RetryTimeoutError):
                        raise
                    # owner unreachable: refresh once and try the (maybe new) owner, else raise
                    self._client.core.refresher.refresh_now()
                    self._n.ssubscribe_slot(slot_of(ch), {ch: handler}, deadline)
            self._mark_subscribed()

    def sunsubscribe(self, *args: Any, target_node: Any = None) -> None:
        """SUNSUBSCRIBE each channel on the node holding it (every shard channel when none are given),
        one channel at a time in order, as RedisCluster does, so the confirmations' counts match."""
        with self._lock:
            self._n.forget(self._n.lost_shard, args)
            names = list_or_args(args[0], args[1:]) if args else None
            held = {name: list(sub.ps.shard_channels) for name, sub in self._n.shard.items()}
            per_node = subscriptions.plan_sunsubscribe(names, held, self.pending_unsubscribe_shard_channels,
                                                       self._n.owner_of, self._n.norm)
            for name, mine in per_node.items():
                sub = self._n.shard[name]
                if not mine:
                    continue
                try:
                    for ch in mine:
                        sub.awaited.sent(self._n.norm(ch))
                        sub.ps.sunsubscribe(ch)
                except CONN_ERRORS as e:
                    self._n.drop_shard(sub, e)
                    self._n.forget(self._n.lost_shard, tuple(mine))
                    if names is None:
                        self._n.lost_shard.clear()

    def reinitialize_shard_subscriptions(self) -> None:
        """Move shard subscriptions whose slot has another owner in the current map now
        (this also happens by itself on MOVED, a server-sent sunsubscribe or a broken connection)."""
        with self._lock:
            self._n.move_shards()
            self._n.recover(force=True)

    on_slots_changed = reinitialize_shard_subscriptions

    def get_message(self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0) -> Any:
        """The next message from any node, or None after `timeout` seconds (None: wait forever);
        None at once after a message its handler took, as redis-py's."""
        return self._next_message(ignore_subscribe_messages, timeout, "")

    def get_sharded_message(self, ignore_subscribe_messages: bool = False, timeout: float | None = 0.0,
                            target_node: Any = None) -> Any:
        """As `get_message` (which also returns shard messages); `target_node` reads only that node's."""
        only = f"{target_node.host}:{target_node.port}" if target_node is not None else ""
        return self._next_message(ignore_subscribe_messages, timeout, only)

    def _next_message(self, ignore_subscribe_messages: bool, timeout: float | None, only: str) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        # as redis-py: with nothing subscribed, wait for another thread to subscribe
        if not self.subscribed and not self._n.subs() and not self.subscribed_event.wait(timeout):
            return None
        while not self._closed:
            with self._lock:
                self._n.recover()
                got, msg = self._n.poll_once(ignore_subscribe_messages, only)
                if msg is subscriptions.HANDLED:
                    return None
                if msg is not None:
                    return msg
                socks = [s for s in (sub.sock() for sub in self._n.subs() if not only or sub.name == only)
                         if s is not None]
                orphans = self._n.orphans()
                if not socks and not orphans and not self._n.subs():
                    return None
            if got:
                continue
            wait = _MAX_WAIT if deadline is None else min(_MAX_WAIT, deadline - time.monotonic())
            if orphans:
                wait = min(wait, max(self._n.next_attempt - time.monotonic(), 0.0))
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
            msg = self.get_message(timeout=None if self._n.subs() else _MAX_WAIT)
            if msg is not None:
                yield msg

    def execute_command(self, *args: Any) -> None:
        """Send a raw command on the classic connection (placed by args[1]'s slot if it has none yet)."""
        self._check_open()
        with self._lock:
            sub = self._n.classic_sub(key=args[1] if len(args) > 1 else None)
            sub.ps.execute_command(*args)

    def ping(self, message: Any = None) -> Any:
        """PING on the classic connection (its reply comes back as a 'pong' message)."""
        with self._lock:
            return self._classic_call("ping", message)

    def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        sub = self._n.classic or next(iter(self._n.shard.values()), None)
        if sub is None:
            sub = self._n.classic_sub()
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

    def reset(self) -> None:
        """Unsubscribe from everything by closing every connection."""
        with self._lock:
            subs = self._n.clear()
            self.subscribed_event.clear()
        for sub in subs:
            quiet_close(sub)

    def disconnect(self) -> None:
        """Close the sockets but keep the subscriptions: the next read reconnects and resubscribes."""
        with self._lock:
            for sub in self._n.subs():
                if sub.ps.connection is not None:
                    sub.ps.connection.disconnect()
                sub.awaited.clear()  # the reconnect resubscribes: no confirmation comes for these

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
        return (f"<ClusterPubSub classic={self._n.classic.name if self._n.classic else None} "
                f"sharded={sorted(self._n.shard)} moving={len(self._n.lost_shard) + len(self._n.lost_channels)}>")
