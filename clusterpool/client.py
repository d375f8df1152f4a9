"""`ClusterClient`: redis-py's command API over the slot-map router.

How this works: every redis-py command method ends in `execute_command`.
There we look the command up in the server's command table (cached per
command name), hash its key to a slot, take the slot's shard from the current
immutable Topology, let the read strategy pick a node (`pick_node`), and hand the
command to the redirect/retry loop in `router.py`. Commands that are not a
single key's (keyless, multi-node, SCAN) take the slow path in `fanout.py`;
the inspection API lives in `inspection.py`, RedisCluster's node API in
`nodeapi.py` and the rest of its surface (lock, encoder, READONLY, CLIENT
SETNAME ...) in `dropin.py`; the command methods are redis-py's
RedisClusterCommands, as on RedisCluster. This module holds construction,
the reader/writer views, the hot path and the batch entry points.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from redis.exceptions import WatchError
from redis.commands import RedisClusterCommands

from ._redispy import CaseInsensitiveDict, CommandMixinState, get_response_callbacks
from .routes import NodeFlags
from ._redispy import NEVER_DECODE
from .cachestore import MISS, CacheStore, Ticket, cache_key, forget_written, mget_read
from .commands import CommandInfo
from .config import Config
from .core import Core
from .dropin import DropInMixin
from .fanout import FanoutMixin
from .hedged import HedgedReads
from .hedging import Hedger
from .routes import write_refused
from .inspection import InspectionMixin
from .multikey import mget_nonatomic, mset_nonatomic
from .nodeapi import NodeAPIMixin, NodeAPIState
from .options import url_arguments
from .pipeline import ClusterPipeline
from .pubsub import ClusterPubSub
from .quickcommands import QuickCommands
from .pool import current_pid
from .readfrom import choose
from .router import RouterMixin
from .slots import encode_key, key_slot
from .tracing import LatencyRecorder, combine
from .views import ViewsMixin
from .topology import Node, Topology


class ClusterClient(QuickCommands, ViewsMixin, RouterMixin, InspectionMixin, FanoutMixin, NodeAPIMixin, DropInMixin,
                    NodeFlags, CommandMixinState, RedisClusterCommands):
    """A Redis Cluster client with redis-py's command API.

    The plain client sends everything to primaries (read-your-writes, like
    RedisCluster). `client.reader` sends reads to replicas round-robin and
    refuses writes; `client.writer` pins everything to primaries. Views share
    this client's pools, topology and threads. Nothing touches the network
    until the first command or `connect()`.
    """

    # redis.typing.SyncClientProtocol's marker: redis-py's command methods are typed for `self`
    # carrying it, so `client.get("k")` type-checks and reveals RedisCluster's return types
    _is_async_client: Literal[False] = False  # redispy-seam

    def __init__(
        self,
        host: str | None = None,
        port: int = 6379,
        startup_nodes: Iterable[Any] | None = None,
        **options: Any,
    ) -> None:
        """`options`: clusterpool's (the fields of `clusterpool.Config`), redis-py's connection
        keywords, and RedisCluster's; a wrong one raises ConfigurationError here."""
        config = Config.build(host, port, startup_nodes, options)
        self.config = config
        conn_kwargs = config.connection
        self.core = Core(config)
        self._init_views(config.read_from, config.client_az)
        self.max_redirections = config.max_redirections
        self.retry = config.retry  # set_retry() replaces it, as on RedisCluster
        self.retry_unknown_outcome = config.retry_unknown_outcome
        self.retry_timeout = config.retry_timeout
        self.replica_fallback = config.replica_fallback
        self.response_callbacks = CaseInsensitiveDict(
            get_response_callbacks(
                user_protocol=conn_kwargs.get("protocol"),
                legacy_responses=conn_kwargs.get("legacy_responses", True),
            )
        )
        self._callbacks: dict[Any, Any] = {}
        self._install_callbacks(conn_kwargs.get("protocol"), conn_kwargs.get("legacy_responses", True))
        self._shared = NodeAPIState()  # default node, per-node redis.Redis clients: one for all views
        self._hedging = HedgedReads(Hedger(config.hedge)) if config.hedge is not None else None  # shared by views
        self.latency = LatencyRecorder() if config.track_latency else None
        self._hook = combine(self.latency, config.command_hook)
        if self._hook is not None:
            self._run = self._run_traced  # type: ignore[method-assign]

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ClusterClient:
        """`redis://[user:pass@]host:port` or `rediss://` (TLS); keywords override the URL."""
        host, port, options = url_arguments(url, kwargs)
        return cls(host, port, **options)

    # ---------------------------------------------------------------- views

    def _bind_view(self, view: Any) -> None:
        if "_run" in view.__dict__:
            view._run = view._run_traced  # bound to the view, not the parent

    def _reader_view_is_current(self, view: Any) -> bool:
        return bool(view.core is self.core)

    # ---------------------------------------------------------------- lifecycle

    def connect(self) -> ClusterClient:
        """Discover the cluster now instead of on the first command."""
        self.core.ensure()
        return self

    def close(self) -> None:
        """Stop background threads and close every connection. Idempotent."""
        self.core.close()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        t = self.core.topology
        shape = "not connected" if t is None else f"{len(t.shards)} shards, {len(t.nodes)} nodes, v{t.version}"
        return f"<ClusterClient {shape}, read_from={self.read_from}>"

    # ---------------------------------------------------------------- hot path

    def execute_command(self, *args: Any, **options: Any) -> Any:
        core = self.core
        topo = core.topology
        if topo is None or core.pid != current_pid():
            topo = core.ensure()
        cached = core.table.resolved.get(args[0])  # type: ignore[union-attr]
        if cached is not None and not cached[1] and "target_nodes" not in options:
            info = cached[0]
            idx = info.single_key
            if idx and len(args) > idx:
                if core.cache is not None:
                    return self._keyed_cached(core.cache, info, idx, args, options, topo)
                key = args[idx]
                slot = key_slot(key if type(key) is bytes else encode_key(key))
                return self._keyed(info, slot, args, options, topo)
        if core.cache is not None:
            return self._dispatch_cached(core.cache, args, options)
        return self._dispatch(args, options)

    def _keyed(self, info: CommandInfo, slot: int, args: Sequence[Any], options: dict[str, Any],
               topo: Topology, ticket: Ticket | None = None) -> Any:
        if self.refuses_writes and not info.readonly:
            self.refuse_write(args)
        if self.retry_timeout is None:
            return self._run(self.pick_node(topo, slot, info.readonly), info, slot, args, options, ticket=ticket)
        deadline = time.monotonic() + self.retry_timeout  # a wait for the slot's owner counts too
        return self._run(self.pick_node(topo, slot, info.readonly, deadline), info, slot, args, options,
                         deadline=deadline, ticket=ticket)

    def _keyed_cached(self, store: CacheStore, info: CommandInfo, idx: int, args: Sequence[Any],
                      options: dict[str, Any], topo: Topology) -> Any:
        """A single-key command with the cache on: a cacheable read is served from the cache or
        read with a ticket; a write drops the key's entries once it is done (read-your-writes)."""
        if info.readonly:
            ckey = cache_key(self._cache_ns, args)
            if ckey is not None and self.core.cache_reads(args[0], info) and NEVER_DECODE not in options:
                value = store.get(ckey, time.monotonic() if store.ttl else 0.0)
                if value is not MISS:
                    return self.parse_reply(args[0], value, options)
                rkey = encode_key(args[idx])
                slot = key_slot(rkey)
                return self._keyed(info, slot, args, options, topo, store.begin(ckey, rkey, slot))
            return self._keyed(info, key_slot(encode_key(args[idx])), args, options, topo)
        rkey = encode_key(args[idx])
        try:
            return self._keyed(info, key_slot(rkey), args, options, topo)
        finally:
            store.invalidate((rkey,))

    def _dispatch_cached(self, store: CacheStore, args: Sequence[Any], options: dict[str, Any]) -> Any:
        """The slow path with the cache on: an MGET whose every key has a cached GET is served
        from them (one in a slot that misses is read with a ticket, each value stored as its
        GET); a write's keys (all entries, for a keyless write) are dropped once it is done."""
        if type(args[0]) is str and args[0].upper() == "MGET" and NEVER_DECODE not in options:
            values, ticket = mget_read(store, self._cache_ns, args[1:], time.monotonic() if store.ttl else 0.0)
            if values is not None:
                return self.parse_reply(args[0], values, options)
            if ticket is not None:
                table = self.core.table
                assert table is not None
                return self._keyed(table.resolve(args)[0], ticket[4], args, options, self.core.ensure(), ticket)
        try:
            return self._dispatch(args, options)
        finally:
            forget_written(store, self.core.table, args)

    def pick_node(self, topo: Topology, slot: int, readonly: bool, deadline: float | None = None) -> Node:
        """The node for `slot` (waiting, until `deadline` at most, for a primary when it has none)."""
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            shard = self._wait_for_owner(slot, deadline)
        if not readonly:
            return shard.primary  # type: ignore[return-value]
        return choose(shard, self.core.node_states, self._strategy, self._to_primary, self.replica_fallback)

    def refuse_write(self, args: Sequence[Any]) -> None:
        raise write_refused(args)

    # ---------------------------------------------------------------- batches

    def pipeline(self, transaction: bool = False, shard_hint: Any = None) -> ClusterPipeline:
        """A cluster pipeline (commands grouped per node, one round trip); `transaction=True` for MULTI/EXEC on one slot."""
        return ClusterPipeline(self, transaction=transaction, shard_hint=shard_hint)

    def transaction(self, func: Callable[[ClusterPipeline], Any], *watches: Any, shard_hint: Any = None,
                    value_from_callable: bool = False, watch_delay: float | None = None) -> Any:
        """redis-py's transaction(): `func(pipe)` under WATCH of keys in one slot, retried on WatchError."""
        while True:
            pipe = self.pipeline(transaction=True, shard_hint=shard_hint)
            try:
                if watches:
                    pipe.watch(*watches)
                value = func(pipe)
                exec_value = pipe.execute()
                return value if value_from_callable else exec_value
            except WatchError:
                if watch_delay:
                    time.sleep(watch_delay)
                continue
            finally:
                pipe.reset()

    def mget_nonatomic(self, keys: Any, *args: Any) -> list[Any]:
        """MGET across slots, split per slot and sent to all nodes at once; values in key order."""
        return mget_nonatomic(self, keys, *args)

    def mset_nonatomic(self, mapping: Any) -> list[bool]:
        """MSET across slots, one MSET per slot (not atomic across slots)."""
        return mset_nonatomic(self, mapping)

    def pubsub(self, node: Any = None, host: str | None = None, port: int | None = None,
               **kwargs: Any) -> ClusterPubSub:
        """A `ClusterPubSub` (redis-py's PubSub interface): classic channels on `node` (or host, port)
        if given, else on one node; shard channels on their slot's primary."""
        return ClusterPubSub(self, node=node, host=host, port=port, **kwargs)
