"""`ClusterClient` for asyncio: redis-py's async command API over auto-pipelined node connections.

How this works: every redis-py async command method ends in `execute_command`. A
single-key command is hashed to its slot, the read strategy picks a node
(`readfrom.choose`, the sync client's), and `_run` sends it on that node's shared
connections. Anything else is routed by `fanout.route` (the sync client's decision:
RedisCluster's table, keys, request policies, the default node). Every failure goes to
`policy.decide` and its action is carried out here: MOVED repoints the slot, ASK resends
with ASKING written back to back with the command, TRYAGAIN/CLUSTERDOWN/LOADING back off
with asyncio.sleep, a broken connection marks the node (its breaker) and waits for a new
map. Blocking commands (BLPOP, XREAD BLOCK, WAIT ...) lease a dedicated connection.

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

from redis import exceptions as rx
from redis._parsers.encoders import Encoder
from redis._parsers.helpers import get_response_callbacks
from redis.asyncio.lock import Lock
from redis.client import EMPTY_RESPONSE, NEVER_DECODE, CaseInsensitiveDict
from redis.commands import AsyncRedisClusterCommands
from redis.event import EventDispatcher

from .. import errors
from ..commands import CommandInfo, CommandTable
from ..observe import Observer
from ..config import Config, backoff_of
from ..dropin import composed_callbacks
from ..fanout import Via, fanout_nodes, route, target_nodes, write_refused
from ..merge import merge
from ..options import url_arguments
from ..quickcommands import QuickCommands
from ..policy import Action, Budget, Do, Failure, Kind, decide, failure_kind, reply_kind
from ..readfrom import PRIMARY as READ_PRIMARY
from ..readfrom import REPLICA as READ_REPLICA
from ..readfrom import ReadStrategy, StrategyLike, choose, make_strategy
from ..resp import callback_for, parse_reply
from ..router import give_up_error
from ..routes import merges, shape
from ..slots import encode_key, key_slot
from ..topology import Node, Shard, Topology
from .commandinfo import unknown_name
from .errors import CommandTimeoutError, LostConnectionError
from .inspection import InspectionMixin
from .nodes import NodeAPIMixin
from .pipeline import ClusterPipeline, Share, run_all
from .pubsub import ClusterPubSub
from .state import AsyncNode, ClusterState
from .transaction import TransactionPipeline, run_transaction
from .wire import hiredis_pack, refuse_stateful

# Commands that hold their connection until the server answers: never on a shared connection.
_BLOCK_ARG = frozenset({"xread", "xreadgroup"})  # blocking only with BLOCK
_ALWAYS_BLOCKING = frozenset({"wait", "waitaof"})


def is_blocking(info: CommandInfo, argv: Sequence[Any]) -> bool:
    """Whether the command may block its connection (it then goes to a dedicated lease)."""
    if info.name in _ALWAYS_BLOCKING:
        return True
    if "blocking" not in info.flags:
        return False
    if info.name in _BLOCK_ARG:
        return any(isinstance(a, str | bytes) and a.upper() in ("BLOCK", b"BLOCK") for a in argv)
    return True


# the ignore: redis-py's own async command mixins disagree on command_info's signature
class ClusterClient(QuickCommands, InspectionMixin, NodeAPIMixin, AsyncRedisClusterCommands):  # type: ignore[misc]
    """A Redis Cluster client for asyncio with redis-py's async command API.

    The plain client sends everything to primaries (read-your-writes, like RedisCluster);
    `client.reader` sends reads to replicas and refuses writes; `client.writer` pins
    everything to primaries. Views share this client's connections and map. Nothing
    touches the network until the first command or `await client.initialize()`.
    """

    _event_dispatcher = EventDispatcher()  # declared by redis-py's command mixins

    PRIMARIES = "primaries"
    REPLICAS = "replicas"
    ALL_NODES = "all"
    RANDOM = "random"
    DEFAULT_NODE = "default-node"

    def __init__(self, host: str | None = None, port: int = 6379, startup_nodes: Iterable[Any] | None = None,
                 **options: Any) -> None:
        """The sync ClusterClient's keywords (clusterpool.Config, redis-py's connection keywords,
        RedisCluster's); a wrong one raises ConfigurationError here, before any I/O."""
        config = Config.build(host, port, startup_nodes, options)
        self.config = config
        self._state = ClusterState(config)
        self._strategy: ReadStrategy = make_strategy(config.read_from)
        self._to_primary = getattr(self._strategy, "name", "") == READ_PRIMARY
        self._reader_strategy: ReadStrategy = make_strategy(READ_REPLICA)
        self.refuses_writes = False
        self.retry = config.retry
        kw = config.connection
        protocol, legacy = kw.get("protocol"), kw.get("legacy_responses", True)
        base: Any = CaseInsensitiveDict(get_response_callbacks(user_protocol=protocol, legacy_responses=legacy))  # type: ignore[arg-type]
        self.response_callbacks: Any = CaseInsensitiveDict(dict(base))
        self.response_callbacks.update(composed_callbacks(base, protocol, legacy))
        self._callbacks: dict[Any, Any] = {}
        self.encoder = Encoder(kw.get("encoding", "utf-8"), kw.get("encoding_errors", "strict"),
                               bool(kw.get("decode_responses", False)))
        self._default: list[str] = []  # the default node's name, shared by the views
        self._decodes = bool(kw.get("decode_responses", False))
        self._pubsubs: weakref.WeakSet[ClusterPubSub] = weakref.WeakSet()  # closed by aclose(), shared by views

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ClusterClient:
        """`redis://[user:pass@]host:port` or `rediss://` (TLS); keywords override the URL."""
        host, port, options = url_arguments(url, kwargs)
        return cls(host, port, **options)

    # ---- views -----------------------------------------------------------------------

    def _view(self, strategy: ReadStrategy, refuse_writes: bool) -> ClusterClient:
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.__dict__.pop("_reader_view", None)
        view._strategy = strategy
        view._to_primary = getattr(strategy, "name", "") == READ_PRIMARY
        view.refuses_writes = refuse_writes
        return view

    @property
    def reader(self) -> ClusterClient:
        """Reads go to replicas round-robin (or this client's non-primary strategy); writes are refused."""
        view = self.__dict__.get("_reader_view")
        if view is None:
            strategy = self._strategy if not self._to_primary else self._reader_strategy
            view = self._reader_view = self._view(strategy, True)
        return view

    @property
    def writer(self) -> ClusterClient:
        """Everything goes to primaries: reads see the writes just made."""
        return self._view(make_strategy(READ_PRIMARY), False)

    def with_read_from(self, read_from: StrategyLike, refuse_writes: bool = False) -> ClusterClient:
        """A view with another read strategy, sharing connections and map."""
        return self._view(make_strategy(read_from), refuse_writes)

    @property
    def read_from(self) -> str:
        return str(getattr(self._strategy, "name", type(self._strategy).__name__))

    # ---- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> ClusterClient:
        """Discover the cluster now instead of on the first command."""
        await self._state.ensure()
        return self

    async def aclose(self) -> None:
        """Stop the refresh task and close every connection (its pubsubs' too); no task or socket outlives it."""
        await asyncio.gather(*(p.aclose() for p in list(self._pubsubs)))
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
        hit = self._single(topo, args, options)
        if hit is None:
            return await self._dispatch(args, options)
        info, slot, node = hit
        if node is None:
            node = await self._pick(topo, slot, info.readonly)
        return await self._run(node.name, info, slot, args, options)

    def _single(self, topo: Topology, args: Sequence[Any],
                options: dict[str, Any]) -> tuple[CommandInfo, int, Node | None] | None:
        """A plain single-key command's info, slot and node (None: the slot has no primary
        in the map); None for anything else (`_dispatch` routes it)."""
        table = self._state.table
        assert table is not None
        cached = table.resolved.get(args[0])
        if cached is None or cached[1] or "target_nodes" in options:
            return None
        info = cached[0]
        idx = info.single_key
        if not idx or len(args) <= idx or info.flags & _BLOCKING_FLAGS:
            return None
        if self.refuses_writes and not info.readonly:
            raise write_refused(args)
        key = args[idx]
        slot = key_slot(key if type(key) is bytes else encode_key(key))
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            return info, slot, None
        if not info.readonly:
            return info, slot, shard.primary
        return info, slot, choose(shard, self._state.node_states, self._strategy, self._to_primary,
                                  self.config.replica_fallback)

    def place(self, queue: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
              slots: Sequence[int] | None = None) -> tuple[list[Share], int]:
        """Where the leading key-routed commands of `queue` go, packed per node, without I/O (a
        pipeline's fast path: each node's share is queued as one unit, no task or future each),
        and how many were placed: from the first that needs `execute_command`'s full path (which
        also raises its errors) on, none is. One connection per node keeps the queue's order;
        `slots`: each command's slot when the caller knows it (the *_nonatomic helpers)."""
        state = self._state
        topo = state.topology
        if topo is None:
            return [], 0
        nodes = state.nodes
        shares: dict[int, Share] = {}  # by id() of the topology's Node: no name built per command
        quick: dict[Any, CommandInfo | None] = {}  # per command name: its info when the quick route applies
        decodes, keyed = self._decodes, slots is not None
        placed = 0
        for args, kw in queue:
            if kw and (NEVER_DECODE in kw and decodes or "target_nodes" in kw):
                break
            head = args[0]
            try:
                quick_info = quick[head]
            except KeyError:
                quick_info = quick[head] = self._quick_info(head, keyed)
            except TypeError:  # an unhashable name: the full route looks at it
                quick_info = None
            try:
                if quick_info is not None and (keyed or len(args) > quick_info.single_key):
                    info = quick_info
                    if keyed:
                        slot = slots[placed]  # type: ignore[index]
                    else:
                        key = args[info.single_key]
                        slot = key_slot(key.encode() if type(key) is str else encode_key(key))
                    node = self._owner(topo, slot, info.readonly)
                else:
                    quick_info = None
                    hit = self._in_slot(topo, args, slots[placed]) if keyed else self._single(topo, args, kw)  # type: ignore[index]
                    if hit is None:
                        hit = self._slot_routed(topo, args)
                        if hit is None:
                            break
                    info, slot, node = hit
                if node is None:
                    break
                share = shares.get(id(node))
                if share is None:
                    name = node.name
                    st = nodes.get(name) or state.state(name)
                    if st.loading or (st.open_until and not st.available()):
                        break
                    mux = st.pool.ready()
                    if mux is None:
                        break
                    share = shares[id(node)] = Share(name, mux)
                if quick_info is not None and share.direct and type(args) is tuple:
                    try:
                        data = hiredis_pack(args)
                    except TypeError:  # an argument hiredis refuses: redis-py's packer decides
                        data = share.mux.pack(args)
                else:
                    data = share.mux.pack(args)
            except Exception:  # noqa: BLE001 - the full path raises it again, or retries by the policy
                break
            share.idxs.append(placed)
            share.infos.append(info)
            share.slots.append(slot)
            share.data.append(data)
            placed += 1
        return list(shares.values()), placed

    def _quick_info(self, head: Any, keyed: bool) -> CommandInfo | None:
        """The info of command name `head` when `place` may route and pack it without the full
        checks (one key at a fixed place, or `keyed`: the caller gives the slot; no subcommand,
        not blocking, nothing a shared connection refuses, a str name hiredis packs as one word)."""
        table = self._state.table
        assert table is not None
        cached = table.resolved.get(head)
        if cached is None or cached[1] or type(head) is not str or " " in head:
            return None
        info = cached[0]
        if info.has_subcommands or info.flags & _BLOCKING_FLAGS or not (keyed or info.single_key):
            return None
        if self.refuses_writes and not info.readonly:
            return None
        try:
            refuse_stateful((head,))
        except errors.ConfigurationError:
            return None
        return info

    def _in_slot(self, topo: Topology, args: Sequence[Any], slot: int) -> tuple[CommandInfo, int, Node | None] | None:
        """As `_single`, for a plain command whose keys the caller put in `slot`."""
        table = self._state.table
        assert table is not None
        cached = table.resolved.get(args[0])
        if cached is None or cached[1] or cached[0].flags & _BLOCKING_FLAGS:
            return None
        info = cached[0]
        if self.refuses_writes and not info.readonly:
            raise write_refused(args)
        return info, slot, self._owner(topo, slot, info.readonly)

    def _owner(self, topo: Topology, slot: int, readonly: bool) -> Node | None:
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            return None
        if not readonly:
            return shard.primary
        return choose(shard, self._state.node_states, self._strategy, self._to_primary,
                      self.config.replica_fallback)

    def _slot_routed(self, topo: Topology, args: Sequence[Any]) -> tuple[CommandInfo, int, Node | None] | None:
        """As `_single`, for a command `fanout.route` sends to its keys' one slot (MGET, MSET ...)."""
        table = self._state.table
        assert table is not None
        r = route(table, args, None, self.refuses_writes)
        if r.via is not Via.SLOT or r.slot is None or is_blocking(r.info, r.argv):
            return None
        return r.info, r.slot, self._owner(topo, r.slot, r.readonly)

    def settle(self, args: Sequence[Any], options: dict[str, Any], reply: Any) -> Any:
        """The parsed form of a placed command's raw reply."""
        return self._parse(args[0], reply, options)

    def callback_for(self, head: Any) -> Any:
        """redis-py's response callback for command name `head` (None: the raw reply is kept),
        for a caller that applies it itself to replies with no options."""
        return callback_for(self._callbacks, self.response_callbacks, head)

    async def finish(self, node: str, info: CommandInfo, slot: int, args: Sequence[Any], options: dict[str, Any],
                     error: BaseException) -> Any:
        """A placed command whose reply was `error` (an error reply, a timeout, a lost
        connection), carried through `policy.decide` as in `_run`."""
        first = asyncio.get_running_loop().create_future()
        first.set_exception(error)
        return await self._run(node, info, slot, args, options, first=first)

    async def _pick(self, topo: Topology, slot: int, readonly: bool) -> Node:
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            shard = await self._wait_for_owner(slot)
        if not readonly:
            return shard.primary  # type: ignore[return-value]
        return choose(shard, self._state.node_states, self._strategy, self._to_primary,
                      self.config.replica_fallback)

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
            raise errors.ConfigurationError(
                f"{r.name} changes connection state, which the asyncio client's shared connections cannot keep")
        topo = await state.ensure()
        if r.via is Via.SLOT:
            assert r.slot is not None
            node = await self._pick(topo, r.slot, r.readonly)
            return await self._run(node.name, info, r.slot, args, options, blocking=blocking)
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

    # ---- one command, through policy.decide -------------------------------------------

    async def _run(self, name: str, info: CommandInfo, slot: int | None, args: Sequence[Any],
                   options: dict[str, Any], asking: bool = False, blocking: bool = False,
                   observed: bool = False, first: asyncio.Future[Any] | None = None) -> Any:
        """Run one command on node `name`; every failure is handed to `policy.decide`.
        `observed`: inside the observer's scope already; `first`: the reply of the first try,
        already written (`start`)."""
        state = self._state
        if state.observer is not None and not observed:
            return await self._run_observed(state.observer, name, info, slot, args, options, asking, blocking, first)
        budget: Budget | None = None  # built on the first failure only
        error: BaseException | None = None
        raw = bool(options) and NEVER_DECODE in options and self._decodes
        if raw:  # a shared connection decodes every reply: bytes (DUMP) need a connection of their own
            blocking = True
        while True:
            st = state.nodes.get(name) or state.state(name)
            failure: Failure
            if first is None and st.open_until and not st.available():
                failure = Failure(Kind.BREAKER_OPEN, name)
            else:
                try:
                    if first is not None:
                        pending, first = first, None
                        reply = await pending
                    elif blocking:
                        reply = await self._leased(st, args, asking, raw)
                    else:
                        reply = await st.pool.execute(*args, asking=asking)
                except rx.ResponseError as e:
                    error = e
                    kind = reply_kind(e)
                    if kind is None:
                        if EMPTY_RESPONSE in options:
                            return options[EMPTY_RESPONSE]
                        raise
                    target = f"{e.host}:{e.port}" if isinstance(e, rx.AskError) else ""
                    failure = Failure(kind, name, sent=True, target=target)
                except rx.BusyLoadingError as e:  # a ConnectionError in redis-py, but a reply
                    error = e
                    failure = Failure(Kind.LOADING, name, sent=True)
                except LostConnectionError as e:
                    error = e
                    failure = Failure(Kind.CONNECTION, name, sent=e.sent, fresh=not e.reused)
                except CommandTimeoutError as e:
                    error = e
                    failure = Failure(Kind.TIMEOUT, name, sent=e.sent)
                except (rx.ConnectionError, rx.TimeoutError, OSError) as e:  # opening failed: nothing sent
                    error = e
                    failure = Failure(failure_kind(e), name, sent=False)
                else:
                    if budget is not None or st.loading:
                        state.node_recovered(name)
                    return self._parse(args[0], reply, options)
            if budget is None:
                budget = Budget(self.config.max_redirections, self.retry.get_retries(), self.config.retry_timeout)
            action = decide(failure, budget, now=time.monotonic(), backoff=self._backoff, readonly=info.readonly,
                            retry_unknown=self.config.retry_unknown_outcome, on_replica=st.readonly,
                            asking=asking, keyed=slot is not None)
            budget = action.budget
            name, asking = await self._apply(action, failure, st, info, slot, args, error)
            if observed and state.observer is not None:
                state.observer.used(name)

    async def _run_observed(self, observer: Observer, name: str, info: CommandInfo, slot: int | None,
                            args: Sequence[Any], options: dict[str, Any], asking: bool, blocking: bool,
                            first: asyncio.Future[Any] | None) -> Any:
        """`_run` inside one observer scope (see observe.py): taken only while an observer is set."""
        scope = observer.command(name, args)
        try:
            result = await self._run(name, info, slot, args, options, asking, blocking, True, first)
        except BaseException as e:
            scope.end(e)
            raise
        scope.end(None)
        return result

    async def _leased(self, st: AsyncNode, args: Sequence[Any], asking: bool, raw: bool) -> Any:
        """A command on a dedicated connection (blocking ones wait as long as the server does);
        `raw`: the reply is read undecoded."""
        async with st.pool.lease() as conn:
            if asking:
                await conn.execute("ASKING")
            await conn.send(*args)
            return await conn.read(timeout=None, disable_decoding=raw)

    async def _apply(self, action: Action, failure: Failure, st: AsyncNode, info: CommandInfo, slot: int | None,
                     args: Sequence[Any], error: BaseException | None) -> tuple[str, bool]:
        """Carry out one policy action; returns where to send next and whether with ASKING."""
        state = self._state
        self.note_failure(action, failure, st, error)
        name = failure.node
        if action.do is Do.RAISE:
            raise give_up_error(action, failure, st.failures, slot, args, error)
        if action.do in (Do.REDIRECT, Do.RETRY_FRESH):
            return action.node, action.asking
        if action.do is Do.BACKOFF:
            await asyncio.sleep(action.delay)
            return self._reroute(name, info, slot), False
        # WAIT_FOR_MAP: at once if a map moves the slot elsewhere during the wait, else the same node
        deadline = time.monotonic() + action.delay
        while True:
            nxt = self._reroute(name, info, slot)
            remaining = deadline - time.monotonic()
            if nxt != name or remaining <= 0:
                return nxt, False
            t = state.topology
            await state.wait_for_change(t.version if t is not None else 0, remaining)

    def note_failure(self, action: Action, failure: Failure, st: AsyncNode, error: BaseException | None) -> None:
        """What a policy action says about the cluster, applied whatever the command does next."""
        state = self._state
        if state.observer is not None:
            state.observer.failure(action, failure, error)
        if action.drop_idle:
            st.pool.dedicated.drop_idle()
        if action.mark_failed:
            state.node_failed(failure.node, error)
        if action.keep_reads_off:
            state.node_loading(failure.node)
        if action.repoint and isinstance(error, rx.MovedError):
            state.on_moved(error.slot_id, error.host, error.port)
        if action.refresh:
            state.request_refresh()

    def _reroute(self, name: str, info: CommandInfo, slot: int | None) -> str:
        """Where to try next: the slot's owner in the (maybe refreshed) map."""
        topo = self._state.topology
        if slot is None or topo is None:
            return name
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            return name
        if not info.readonly:
            return shard.primary.name
        return choose(shard, self._state.node_states, self._strategy, self._to_primary,
                      self.config.replica_fallback).name

    async def _wait_for_owner(self, slot: int) -> Shard:
        """The slot has no primary in our map: refresh and wait within the retry budget, then give up."""
        state = self._state

        def owner() -> Shard | None:
            t = state.topology
            shard = t.slot_table[slot] if t is not None else None
            return shard if shard is not None and shard.primary is not None else None

        await state.refresh_now()
        budget = Budget(self.config.max_redirections, self.retry.get_retries(), self.config.retry_timeout)
        first = time.monotonic()
        while True:
            budget = budget.failed(first)
            if not budget.may_retry(time.monotonic()):
                break
            found = owner()
            if found is not None:
                return found
            state.request_refresh()
            t = state.topology
            await state.wait_for_change(t.version if t is not None else 0, self._backoff(budget.failures))
        t = state.topology
        if t is not None and t.slot_table[slot] is not None:
            raise errors.NodeUnavailableError(
                f"the primary serving slot {slot} failed and no replica was promoted within the retry budget"
            )
        raise errors.SlotNotCoveredError(f"slot {slot} is not served by any primary in the cluster's map")

    # ---- what transactions ask of the client (transaction.py) ---------------------------

    def command_table(self) -> CommandTable:
        """The command table in use (the shipped specs before discovery): no I/O."""
        table = self._state.table
        return table if table is not None else CommandTable.bundled_with(None)

    async def primary_for(self, slot: int) -> str:
        """The name of the slot's primary in the current map (waiting for one within the retry budget)."""
        topo = await self._state.ensure()
        return (await self._pick(topo, slot, False)).name

    def node_state(self, name: str) -> AsyncNode:
        """Node `name`'s state: its breaker and its connections (made on first use)."""
        return self._state.nodes.get(name) or self._state.state(name)

    def node_recovered(self, name: str) -> None:
        """A command succeeded on `name` after failures: its breaker closes."""
        self._state.node_recovered(name)

    def new_budget(self) -> Budget:
        """A fresh redirection and retry allowance for one command."""
        return Budget(self.config.max_redirections, self.retry.get_retries(), self.config.retry_timeout)

    def backoff_delay(self, n: int) -> float:
        """The backoff before retry number `n`."""
        return self._backoff(n)

    @property
    def retry_unknown_outcome(self) -> bool:
        return bool(self.config.retry_unknown_outcome)

    def parse_reply(self, head: Any, response: Any, options: dict[str, Any]) -> Any:
        """A raw reply through redis-py's response callback for `head` (and this client's own)."""
        return self._parse(head, response, options)

    def give_up(self, action: Action, failure: Failure, st: AsyncNode, slot: int | None, args: Sequence[Any],
                error: BaseException | None) -> BaseException:
        """The error a RAISE action stands for."""
        return give_up_error(action, failure, st.failures, slot, args, error)

    async def carry_out(self, action: Action, failure: Failure, st: AsyncNode, slot: int | None,
                        args: Sequence[Any], error: BaseException | None) -> tuple[str, bool]:
        """Carry out a policy action for a write to `slot`: where to send next and whether with ASKING
        (after any backoff or wait for a new map); raises what a RAISE action stands for."""
        table = self.command_table()
        return await self._apply(action, failure, st, table.resolve(("EXEC",))[0], slot, args, error)

    def _backoff(self, n: int) -> float:
        return float(backoff_of(self.retry).compute(n))

    def _parse(self, head: Any, response: Any, options: dict[str, Any]) -> Any:
        return parse_reply(self._callbacks, self.response_callbacks, head, response, options)


_BLOCKING_FLAGS = frozenset({"blocking"})
