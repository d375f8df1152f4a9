"""`ClusterClient` for asyncio: redis-py's async command API over auto-pipelined node connections.

How this works: every redis-py async command method ends in `execute_command`. A
single-key command is hashed to its slot, the read strategy picks a node
(`readfrom.choose`, the sync client's; placement.py), and `_run` (router.py) sends it on
that node's shared connections, handing every failure to `policy.decide`. Anything else is
routed here by `fanout.route` (the sync client's decision: RedisCluster's table, keys,
request policies, the default node). Blocking commands (BLPOP, XREAD BLOCK, WAIT ...) lease
a dedicated connection.

`pipeline()` queues commands and sends them together (pipeline.py); `pipeline(transaction=True)`
and `transaction()` are single-slot MULTI/EXEC with WATCH (transaction.py); `lock()` is redis-py's
asyncio Lock. RedisCluster's node API is in nodes.py, topology()/stats()/events() in
inspection.py; a command the shipped specs lack is looked up with COMMAND INFO once
(commandinfo.py) and then routed by its keys; `pubsub()` is redis.asyncio's PubSub with
shard channels (pubsub.py).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal, overload

from redis.asyncio.lock import Lock
from redis.commands import AsyncRedisClusterCommands

from .._redispy import CaseInsensitiveDict, CommandMixinState, Encoder, get_response_callbacks
from ..routes import NodeFlags
from .. import errors, naming
from ..hedging import Hedger
from .hedged import AsyncHedging
from ..commands import CommandInfo
from ..observe import Observer
from ..config import Config
from ..callbacks import composed_callbacks
from ..routes import Via, fanout_nodes, route, target_nodes
from ..merge import merge
from ..options import url_arguments
from ..quickcommands import QuickCommands
from ..views import ViewsMixin
from ..routes import merges, route_name, shape
from ..slots import encode_key, key_slot
from ..topology import Node
from ..cachestore import MISS
from .cacheread import CacheReadMixin
from .commandinfo import unknown_name
from .errors import LostConnectionError
from .inspection import InspectionMixin
from .nodeapi import NodeAPIMixin
from .pipeline import ClusterPipeline, run_all
from .placement import is_blocking
from .pubsub import ClusterPubSub
from .state import ClusterState
from .transaction import TransactionPipeline, run_transaction
from .wire import hiredis_pack

# the ignore: redis-py's own async command mixins disagree on command_info's signature
class ClusterClient(QuickCommands, ViewsMixin, InspectionMixin, NodeAPIMixin, CacheReadMixin,  # type: ignore[misc]
                    NodeFlags, CommandMixinState, AsyncRedisClusterCommands):
    """A Redis Cluster client for asyncio with redis-py's async command API.

    The plain client sends everything to primaries (read-your-writes, like RedisCluster);
    `client.reader` sends reads to replicas and refuses writes; `client.writer` pins
    everything to primaries. Views share this client's connections and map. Nothing
    touches the network until the first command or `await client.initialize()`.
    """

    # redis.typing.AsyncClientProtocol's marker: `await client.get("k")` type-checks and
    # reveals the same types as on redis.asyncio.cluster.RedisCluster
    _is_async_client: Literal[True] = True  # redispy-seam

    def __init__(self, host: str | None = None, port: int = 6379, startup_nodes: Iterable[Any] | None = None,
                 **options: Any) -> None:
        """The sync ClusterClient's keywords (clusterpool.Config, redis-py's connection keywords,
        RedisCluster's); a wrong one raises ConfigurationError here, before any I/O."""
        config = Config.build(host, port, startup_nodes, options)
        self.config = config
        self._state = ClusterState(config)
        self._init_views(config.read_from, config.client_az)
        self._hedging = None if config.hedge is None else AsyncHedging(  # shared by the views
            Hedger(config.hedge), lambda: self._state.node_states, config.client_az, self.node_state)
        self.retry = config.retry
        kw = config.connection
        protocol, legacy = kw.get("protocol"), kw.get("legacy_responses", True)
        base: Any = CaseInsensitiveDict(get_response_callbacks(user_protocol=protocol, legacy_responses=legacy))
        self.response_callbacks: Any = CaseInsensitiveDict(dict(base))
        self.response_callbacks.update(composed_callbacks(base, protocol, legacy))
        self._callbacks: dict[Any, Any] = {}
        self.encoder = Encoder(kw.get("encoding", "utf-8"), kw.get("encoding_errors", "strict"),
                               bool(kw.get("decode_responses", False)))
        self._default: list[str] = []  # the default node's name, shared by the views
        self._decodes = bool(kw.get("decode_responses", False))
        self._pubsubs: weakref.WeakSet[ClusterPubSub] = weakref.WeakSet()  # closed by aclose(), shared by views
        # client-side caching: the allow-list (None: no cache); cacheread.py serves those reads
        self._cached = None if config.cache is None else config.cache.commands

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ClusterClient:
        """`redis://[user:pass@]host:port` or `rediss://` (TLS); keywords override the URL."""
        host, port, options = url_arguments(url, kwargs)
        return cls(host, port, **options)

    # ---- views -----------------------------------------------------------------------


    # ---- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> ClusterClient:
        """Discover the cluster now instead of on the first command."""
        await self._state.ensure()
        return self

    async def aclose(self) -> None:
        """Stop the refresh task and close every connection (its pubsubs' too); no task or socket outlives it."""
        await asyncio.gather(*(p.aclose() for p in list(self._pubsubs)))
        if self._hedging is not None:
            self._hedging.close()
        await self._state.aclose()

    close = aclose  # redis.asyncio's older name

    async def __aenter__(self) -> ClusterClient:
        return await self.initialize()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        t = self._state.topology
        shape_ = "not connected" if t is None else f"{len(t.shards)} shards, {len(t.nodes)} nodes, v{t.version}"
        return f"<clusterpool.asyncio.ClusterClient {shape_}, read_from={self.read_from}>"

    @overload
    def pipeline(self, transaction: Literal[True], shard_hint: Any = None) -> TransactionPipeline: ...
    @overload
    def pipeline(self, transaction: Literal[False] | None = None, shard_hint: Any = None) -> ClusterPipeline: ...
    @overload
    def pipeline(self, transaction: bool | None = None,
                 shard_hint: Any = None) -> ClusterPipeline | TransactionPipeline: ...
    def pipeline(self, transaction: bool | None = None,
                 shard_hint: Any = None) -> ClusterPipeline | TransactionPipeline:
        """A cluster pipeline (`async with client.pipeline() as pipe`, `await pipe.execute()`), or with
        `transaction=True` a single-slot MULTI/EXEC with WATCH (transaction.py)."""
        if transaction:
            return TransactionPipeline(self, shard_hint)
        return ClusterPipeline(self, transaction=transaction)

    async def transaction(self, func: Callable[[TransactionPipeline], Awaitable[Any]], *watches: Any,
                          **kwargs: Any) -> Any:
        """Run `await func(pipe)` and EXEC while WATCHing `watches`, again after every WatchError,
        as redis.asyncio's RedisCluster.transaction (`value_from_callable`, `watch_delay`)."""
        return await run_transaction(self, func, watches, **kwargs)

    def pubsub(self, node: Any = None, host: str | None = None, port: int | None = None,
               **kwargs: Any) -> ClusterPubSub:
        """A `ClusterPubSub` (redis.asyncio's PubSub interface): classic channels on one node, shard channels on their slot's primary."""
        ps = ClusterPubSub(self._state, self.encoder, self._backoff, node=node, host=host, port=port, **kwargs)
        self._pubsubs.add(ps)
        return ps

    def lock(self, name: Any, timeout: float | None = None, sleep: float = 0.1, blocking: bool = True,
             blocking_timeout: float | None = None, lock_class: type[Lock] | None = None,
             thread_local: bool = True, raise_on_release_error: bool = True) -> Lock:
        """redis-py's asyncio Lock on key `name` (its scripts run on the key's primary)."""
        cls = lock_class or Lock
        return cls(self, name, timeout=timeout, sleep=sleep, blocking=blocking,  # type: ignore[arg-type]
                   blocking_timeout=blocking_timeout, thread_local=thread_local,
                   raise_on_release_error=raise_on_release_error)

    def set_observer(self, observer: Observer | None) -> Observer | None:
        """Install (None: remove) the observer of this client and all its views; returns the previous one."""
        previous, self._state.observer = self._state.observer, observer
        return previous

    @property
    def observer(self) -> Observer | None:
        """The installed observer (clusterpool.otel's, say), or None."""
        return self._state.observer


    def get_encoder(self) -> Encoder:
        return self.encoder

    def get_connection_kwargs(self) -> dict[str, Any]:
        return dict(self._state.conn_kwargs)

    # ---- the hot path ----------------------------------------------------------------

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        state = self._state
        topo = state.topology
        if topo is None:
            topo = await state.ensure()
        cached = self._cached
        if cached is not None:
            head = args[0]
            if type(head) is str and head.upper() in cached:
                found = await self._through_cache(topo, args, options)
                if found is not MISS:
                    return found
        hit = self._single(topo, args, options)
        if hit is None:
            if cached is not None:
                try:
                    return await self._dispatch(args, options)
                finally:
                    self.forget_written((args,))
            return await self._dispatch(args, options)
        info, slot, node = hit
        try:
            if self.config.retry_timeout is None:
                if node is None:
                    node = await self._pick(topo, slot, info.readonly)
                return await self._run(node.name, info, slot, args, options)
            deadline = time.monotonic() + self.config.retry_timeout  # a wait for the slot's owner counts too
            if node is None:
                node = await self._pick(topo, slot, info.readonly, deadline)
            return await self._run(node.name, info, slot, args, options, deadline=deadline)
        finally:
            if cached is not None and not info.readonly:
                self._written(args[info.single_key])

    async def _dispatch(self, args: Sequence[Any], options: dict[str, Any]) -> Any:
        state = self._state
        assert state.table is not None
        unknown = unknown_name(state.table, args)
        if unknown is not None and state.commands.wants(unknown):
            await state.commands.learn(unknown, self._command_info)
        r = route(state.table, args, options.pop("target_nodes", None), self.refuses_writes)
        info = r.info
        blocking = is_blocking(info, r.argv)
        if r.via is Via.STATE:
            if r.name not in naming.COMMANDS:
                raise errors.ConfigurationError(
                    f"{r.name} changes connection state, which the asyncio client's shared connections cannot keep")
            return await self._rename(route_name(r.name), r.argv, r.targets)
        topo = await state.ensure()
        if r.via is Via.SLOT:
            assert r.slot is not None
            deadline = self.deadline()
            node = await self._pick(topo, r.slot, r.readonly, deadline)
            return await self._run(node.name, info, r.slot, args, options, blocking=blocking, deadline=deadline)
        if r.via is Via.SPLIT:
            return await self._split_sum(args[0], r.keys)
        if r.via is Via.NODES:
            return merge(info.response_policy, await self._on_nodes(fanout_nodes(topo, info), info, args, options))
        if r.via is Via.TARGETS:
            nodes = target_nodes(topo, r.targets, lambda: self._default_node(topo))
            if len(nodes) == 1 and not merges(r.name):
                return await self._run(nodes[0].name, info, None, args, options, blocking=blocking)
            return shape(r.name, await self._on_nodes(nodes, info, args, options))
        return await self._run(self._default_node(topo).name, info, None, args, options, blocking=blocking)

    async def _rename(self, name: str, argv: list[Any], targets: Any) -> Any:
        """CLIENT SETNAME / SETINFO (naming.plan): checked on the probe node's shared connections
        first (the server's error if it is bad), then a keyword of every connection of the targeted
        nodes (all nodes, and nodes to come, when no target is given): their shared connections
        take it in place, dedicated ones are renewed, and each targeted node (the default node
        without targets) keeps a shared connection, so CLIENT LIST shows the name as with RedisCluster."""
        state = self._state
        topo = await state.ensure()
        default = self._default_node(topo)
        nodes = None if targets is None else target_nodes(topo, targets, lambda: default)
        change = naming.plan(argv, nodes, default, state.conn_kwargs, state.node_kwargs, state.nodes)
        command = hiredis_pack(tuple(argv))
        probe = state.state(change.probe.name).pool
        await probe.shared()
        replies = await probe.rename(command)
        if not replies:  # its shared connection broke in between: nothing was sent
            raise LostConnectionError("no open shared connection", node=change.probe.name, sent=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        await state.rename(change, command)
        for node in change.send_to:
            await state.state(node.name).pool.shared()  # opened with the name if none was open
        parsed = self._parse(name, replies[0], {})
        return shape(name, {node.name: parsed for node in change.send_to})

    async def _command_info(self, name: str) -> Any:
        """COMMAND INFO `name` on the default node (a primary), on its shared connections."""
        topo = await self._state.ensure()
        return await self._state.state(self._default_node(topo).name).pool.execute("COMMAND", "INFO", name)

    async def _on_nodes(self, nodes: list[Node], info: CommandInfo, args: Sequence[Any],
                        options: dict[str, Any]) -> dict[str, Any]:
        """The command on each node at once; replies keyed by node name, in the nodes' order."""
        replies = await asyncio.gather(*(self._run(n.name, info, None, args, dict(options)) for n in nodes))
        return {n.name: r for n, r in zip(nodes, replies)}

    async def _split_sum(self, head: Any, keys: Sequence[Any]) -> int:
        """DEL / EXISTS / TOUCH / UNLINK across slots: one command per slot, counts summed."""
        by_slot: dict[int, list[Any]] = {}
        for k in keys:
            by_slot.setdefault(self.slot(k), []).append(k)
        return sum(int(r) for r in await self._execute_pipeline_by_slot(head, by_slot))

    def _partition_keys_by_slot(self, keys: Iterable[Any]) -> dict[int, list[Any]]:
        """redis-py's split of keys by slot, with the slot function the router uses."""
        by_slot: dict[int, list[Any]] = {}
        for k in keys:
            by_slot.setdefault(key_slot(k.encode() if type(k) is str else encode_key(k)), []).append(k)
        return by_slot

    async def _execute_pipeline_by_slot(self, command: str, slots_to_args: Any) -> list[Any]:  # type: ignore[override]
        """One command per slot, all at once (a pipeline: one write per node): what redis-py's
        mget_nonatomic / mset_nonatomic / DEL-across-slots build on."""
        queue: list[tuple[tuple[Any, ...], dict[str, Any]]] = [((command, *a), {}) for a in slots_to_args.values()]
        replies = await run_all(self, queue, list(slots_to_args))
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return replies
