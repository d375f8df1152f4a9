"""The node subscribers behind one sync `ClusterPubSub` (pubsub.py): placement, losing and recovering.

How this works: every connection is a `NodeSub`, a plain `redis.client.PubSub` on a
private one-node `redis.ConnectionPool`, so redis-py's own code parses messages and keeps
handlers. `NodeSubs` holds the classic node subscriber, one per shard-channel owner, and
the subscriptions waiting for a node ("lost": their connection broke, the server sent
`sunsubscribe`, or SSUBSCRIBE was answered with MOVED); `recover()` resubscribes those
where the map puts them now, backing off as `policy.decide` says. Which node serves what
and what moves is `subscriptions.py`'s decision, shared with the asyncio client. The
caller (ClusterPubSub) holds its lock around every call.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from ._redispy import Encoder, list_or_args, pubsub_subscription_args, raw_socket
from . import errors, subscriptions
from .connection import NodeConnection, SSLNodeConnection
from .policy import Budget, Failure, Kind, decide, failure_kind
from .slots import slot_of

if TYPE_CHECKING:
    from .interfaces import Dispatcher

CONN_ERRORS = (rx.ConnectionError, rx.TimeoutError, OSError)
# subscriptions are retried until they are closed: a budget that is never spent
FOREVER = Budget(max_redirections=2**31, retries=2**31)


class NodeSub:
    """One connection to one node: a redis-py PubSub on a private one-node pool."""

    def __init__(self, owner: NodeSubs, name: str, sharded: bool) -> None:
        host, _, port = name.rpartition(":")
        core = owner.client.core
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
                         push_handler_func=owner.push_handler_func)
        self.awaited = subscriptions.AwaitedSunsubscribes()  # SUNSUBSCRIBEs sent, not confirmed yet

    def sock(self) -> Any:
        conn = self.ps.connection
        return None if conn is None else raw_socket(conn)

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


class NodeSubs:
    """Where one pubsub's subscriptions are, and those waiting for a node (see the module docstring)."""

    def __init__(self, client: Dispatcher, ignore_subscribe_messages: bool, push_handler_func: Any) -> None:
        self.client = client
        self.ignore_subscribe_messages = ignore_subscribe_messages
        self.push_handler_func = push_handler_func
        self.pinned = ""  # node name from node= / host=, port=: classic subscriptions go there
        self.classic: NodeSub | None = None
        self.shard: dict[str, NodeSub] = {}  # owner node name -> its node subscriber
        # subscriptions waiting for a node: name -> handler
        self.lost_channels: dict[Any, Any] = {}
        self.lost_patterns: dict[Any, Any] = {}
        self.lost_shard: dict[Any, Any] = {}
        self.lost_classic_node = ""  # classic node whose connection broke (tried again)
        self.classic_key: Any = None  # the first channel or pattern: its slot's owner holds the classic connection
        self.budget = FOREVER  # resubscribe attempts: subscriptions never give up
        self.next_attempt = 0.0
        self.rotation = 0

    def subs(self) -> list[NodeSub]:
        subs = list(self.shard.values())
        if self.classic is not None:
            subs.append(self.classic)
        return subs

    def orphans(self) -> bool:
        return bool(self.lost_channels or self.lost_patterns or self.lost_shard)

    def classic_sub(self, avoid: str = "", key: Any = None) -> NodeSub:
        if self.classic is None:
            if key is not None and self.classic_key is None:
                self.classic_key = key
            key_owner = "" if self.pinned and self.pinned != avoid else self.owner_of(self.classic_key, avoid)
            topo = self.client.core.ensure()
            primaries = [p for p in topo.primaries if p.usable and p.name != avoid] or list(topo.primaries)
            down = self.client.core.node_states.down
            alive = [p.name for p in primaries if p.name not in down] or [p.name for p in primaries]
            name = subscriptions.classic_node(self.pinned, avoid, key_owner, alive, random.choice)
            if not name:
                raise errors.SlotNotCoveredError("the cluster's map has no primary to subscribe on")
            self.classic = NodeSub(self, name, sharded=False)
        return self.classic

    def owner_of(self, key: Any, avoid: str = "") -> str:
        """The primary serving `key`'s slot now, unless it is `avoid` ("" when unknown)."""
        if key is None:
            return ""
        client = self.client
        try:
            name = client.pick_node(client.core.ensure(), slot_of(key), False).name
        except (errors.SlotNotCoveredError, errors.NodeUnavailableError):
            return ""
        return name if name != avoid else ""

    def forget(self, lost: dict[Any, Any], args: tuple[Any, ...]) -> None:
        """Drop the names in `args` (all when empty) from a dict of waiting subscriptions."""
        kept = subscriptions.forget(lost, list_or_args(args[0], args[1:]) if args else None, self.norm)
        lost.clear()
        lost.update(kept)

    def norm(self, name: Any) -> Any:
        """A name as the server's replies spell it (bytes, or str with decode_responses)."""
        enc = self.encoder()
        return enc.decode(enc.encode(name))

    def encoder(self) -> Any:
        kw = self.client.core.conn_kwargs
        return Encoder(kw.get("encoding", "utf-8"), kw.get("encoding_errors", "strict"),
                                        kw.get("decode_responses", False))

    def ssubscribe_slot(self, slot: int, group: dict[Any, Any], deadline: float | None = None) -> None:
        """SSUBSCRIBE channels of one slot on its owner (waiting for one until `deadline` at most);
        on a broken connection they are not subscribed."""
        client = self.client
        topo = client.core.ensure()
        owner = client.pick_node(topo, slot, False, deadline).name
        sub = self.shard.get(owner)
        if sub is None:
            sub = self.shard[owner] = NodeSub(self, owner, sharded=True)
        try:
            sub.ps.ssubscribe(*pubsub_subscription_args(group))
        except CONN_ERRORS as e:
            self.drop_shard(sub, e)
            for ch in group:  # not subscribed: the caller (or recovery) decides what next
                self.lost_shard.pop(self.norm(ch), None)
            raise

    def drop_classic(self, sub: NodeSub, keep: bool) -> None:
        """Forget the classic connection; with `keep`, its subscriptions wait to be resubscribed."""
        if keep:
            self.lost_channels.update(sub.ps.channels)
            self.lost_patterns.update(sub.ps.patterns)
            for ch in sub.ps.pending_unsubscribe_channels:
                self.lost_channels.pop(ch, None)
            for p in sub.ps.pending_unsubscribe_patterns:
                self.lost_patterns.pop(p, None)
            self.lost_classic_node = sub.name
        if self.classic is sub:
            self.classic = None
        quiet_close(sub)

    def drop_shard(self, sub: NodeSub, error: BaseException | None) -> None:
        """The owner connection is gone: its shard channels wait for the slot's (new) owner."""
        ps = sub.ps
        for ch, handler in ps.shard_channels.items():
            if ch not in ps.pending_unsubscribe_shard_channels:
                self.lost_shard[ch] = handler
        if self.shard.get(sub.name) is sub:
            del self.shard[sub.name]
        quiet_close(sub)
        if error is not None:
            self.failed(Failure(failure_kind(error), sub.name, sent=True), error)
        self.next_attempt = 0.0

    def failed(self, failure: Failure, error: BaseException) -> None:
        """What a broken or redirected subscription tells the client about the cluster, as the
        policy says (mark the node, repoint the slot); moving the subscriptions is ours."""
        client = self.client
        action = decide(failure, FOREVER, now=time.monotonic(), backoff=client.backoff_delay, readonly=True)
        client.note_failure(action, failure, client.core.state(failure.node), error)

    def lose(self, sub: NodeSub, error: BaseException) -> None:
        """A node subscriber's connection broke: what it held waits for a node."""
        if sub.sharded:
            self.drop_shard(sub, error)
        else:
            self.drop_classic(sub, keep=True)
            self.next_attempt = 0.0

    def orphan_shard_channels(self, sub: NodeSub, channels: list[Any]) -> None:
        ps = sub.ps
        for ch in channels:
            if ch in ps.shard_channels:
                self.lost_shard[ch] = ps.shard_channels.pop(ch)
        if not (ps.channels or ps.patterns or ps.shard_channels):
            ps.subscribed_event.clear()
        if sub.idle() and self.shard.get(sub.name) is sub:
            del self.shard[sub.name]
            quiet_close(sub)
        self.next_attempt = 0.0

    def recover(self, force: bool = False) -> None:
        """Resubscribe orphaned subscriptions where they belong now (backoff between failed attempts)."""
        if not self.orphans():
            return
        now = time.monotonic()
        if not force and now < self.next_attempt:
            return
        core = self.client.core
        failed = False
        if self.budget.failures or self.lost_shard:
            try:
                core.refresher.refresh_now()
            except Exception:  # a failed refresh keeps the current map; the attempts below decide
                pass
        if self.lost_channels or self.lost_patterns:
            failed |= not self.recover_classic()
        if self.lost_shard:
            lost, self.lost_shard = self.lost_shard, {}
            for slot, group in subscriptions.by_slot(lost).items():
                try:
                    self.ssubscribe_slot(slot, group)
                except (*CONN_ERRORS, errors.SlotNotCoveredError):
                    self.lost_shard.update(group)
                    failed = True
        if failed:  # the next attempt after the policy's backoff (it cannot be spent: see FOREVER)
            now = time.monotonic()
            action = decide(Failure(Kind.CONNECTION, ""), self.budget, now=now,
                            backoff=self.client.backoff_delay, readonly=True)
            self.budget = action.budget
            self.next_attempt = now + action.delay
        else:
            self.budget = FOREVER

    def recover_classic(self) -> bool:
        """Classic orphans onto the classic connection if a subscribe opened one since their loss
        (a second one would leave the first unread), else onto the first candidate that answers."""
        chans, pats = self.lost_channels, self.lost_patterns
        existing = self.classic
        if existing is not None:
            try:
                if chans:
                    existing.ps.subscribe(*pubsub_subscription_args(chans))
                if pats:
                    existing.ps.psubscribe(*pubsub_subscription_args(pats))
            except CONN_ERRORS:
                self.drop_classic(existing, keep=True)
                return False
            self.lost_channels, self.lost_patterns = {}, {}
            self.lost_classic_node = ""
            return True
        previous = self.lost_classic_node
        # the pinned node, else the first channel's owner in the (refreshed) map, then the same node
        topo = self.client.core.topology
        others = [p.name for p in (topo.primaries if topo else ()) if p.usable]
        random.shuffle(others)
        key_owner = "" if self.pinned else self.owner_of(self.classic_key)
        for name in subscriptions.classic_candidates(self.pinned, key_owner, previous, others):
            sub = NodeSub(self, name, sharded=False)
            try:
                if chans:
                    sub.ps.subscribe(*pubsub_subscription_args(chans))
                if pats:
                    sub.ps.psubscribe(*pubsub_subscription_args(pats))
            except CONN_ERRORS:
                quiet_close(sub)
                continue
            self.classic = sub
            self.lost_channels, self.lost_patterns = {}, {}
            self.lost_classic_node = ""
            return True
        return False

    def handle(self, sub: NodeSub, response: Any, ignore: bool) -> Any:
        """The message for the caller, None when there is none, or subscriptions.HANDLED."""
        ch = sub.awaited.server_unsubscribed(response)
        if ch is not None:
            # the server unsubscribed us (slot moved away / node demoted): resubscribe elsewhere
            self.orphan_shard_channels(sub, [ch])
            return None
        msg = sub.ps.handle_message(response, ignore or self.ignore_subscribe_messages)
        if sub.sharded and sub.idle() and self.shard.get(sub.name) is sub:
            del self.shard[sub.name]
            quiet_close(sub)
        if msg is None and subscriptions.is_publish(response):  # redis-py gave it to its handler
            return subscriptions.HANDLED
        return msg

    def poll_once(self, ignore: bool, only: str = "") -> tuple[bool, Any]:
        """Read at most one response from each connection (or node `only`'s) without blocking:
        (anything read, message or subscriptions.HANDLED)."""
        subs = [s for s in self.subs() if s.name == only] if only else self.subs()
        if not subs:
            return False, None
        self.rotation = (self.rotation + 1) % len(subs)
        got = False
        for sub in subs[self.rotation:] + subs[:self.rotation]:
            if sub.ps.connection is None:
                continue
            try:
                response = sub.ps.parse_response(block=False, timeout=0)
            except rx.MovedError as e:
                got = True
                self.failed(Failure(Kind.MOVED, sub.name, sent=True, target=f"{e.host}:{e.port}"), e)
                self.orphan_shard_channels(
                    sub, [ch for ch in sub.ps.shard_channels if slot_of(ch) == e.slot_id])
                continue
            except CONN_ERRORS as e:
                got = True
                self.lose(sub, e)
                continue
            if response is None:
                continue
            got = True
            msg = self.handle(sub, response, ignore)
            if msg is not None:
                return True, msg
        return got, None

    def move_shards(self) -> None:
        """Orphan shard channels whose slot has another owner in the current map."""
        held = {name: list(sub.ps.shard_channels) for name, sub in self.shard.items()}
        for name, moved in subscriptions.moved_shard_channels(held, self.owner_of).items():
            self.orphan_shard_channels(self.shard[name], moved)

    def clear(self) -> list[NodeSub]:
        """Forget every subscription; the node subscribers to close."""
        subs = self.subs()
        self.classic, self.shard = None, {}
        self.lost_channels, self.lost_patterns, self.lost_shard = {}, {}, {}
        self.lost_classic_node = ""
        return subs


def quiet_close(sub: NodeSub) -> None:
    try:
        sub.close()
    except Exception:
        pass
