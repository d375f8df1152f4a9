"""`ClusterClient`: redis-py's command API over the slot-map router.

How this works: every redis-py command method ends in `execute_command`.
There we look the command up in the server's command table (cached per
command name), hash its key to a slot, take the slot's shard from the current
immutable Topology, let the read strategy pick a node, and run the command on
that node's pool. Redirections and failures are handled in `_run`'s loop:
MOVED repoints the slot and retries on the owner, ASK sends ASKING + command
once, TRYAGAIN/CLUSTERDOWN/LOADING back off, a broken connection marks the
node and retries within the budget if the outcome is known or the command only
reads. Commands that are not a single key's (keyless, multi-node, SCAN) take
the slow path in `fanout.py`; the inspection API lives in `inspection.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from redis import exceptions as rx
from redis.backoff import EqualJitterBackoff
from redis.client import EMPTY_RESPONSE, NEVER_DECODE, CaseInsensitiveDict
from redis.commands import CoreCommands
from redis.connection import parse_url
from redis.event import EventDispatcher
from redis.retry import Retry

from . import errors
from .commands import CommandInfo
from .connection import CONNECTION_KEYS, default_driver_info, pack, pack_many
from .core import Core
from .fanout import FanoutMixin
from .inspection import InspectionMixin
from .options import IGNORED_COMPAT, node_list, redact_url
from .pool import current_pid
from .readfrom import PRIMARY as READ_PRIMARY
from .readfrom import REPLICA as READ_REPLICA
from .readfrom import ReadStrategy, StrategyLike, make_strategy
from .slots import encode_key, key_slot
from .tracing import LatencyRecorder, combine
from .topology import Node, Shard, Topology
from .resp import command_name

T = TypeVar("T")

try:  # redis-py >= 6
    from redis._parsers.helpers import get_response_callbacks
except ImportError:  # pragma: no cover
    get_response_callbacks = None  # type: ignore[assignment]


class ClusterClient(InspectionMixin, FanoutMixin, CoreCommands):
    """A Redis Cluster client with redis-py's command API.

    The plain client sends everything to primaries (read-your-writes, like
    RedisCluster). `client.reader` sends reads to replicas round-robin and
    refuses writes; `client.writer` pins everything to primaries. Views share
    this client's pools, topology and threads. Nothing touches the network
    until the first command or `connect()`.
    """

    _event_dispatcher = EventDispatcher()  # declared by redis-py's command mixins

    PRIMARIES = "primaries"
    REPLICAS = "replicas"
    ALL_NODES = "all"
    RANDOM = "random"
    DEFAULT_NODE = "default-node"

    def __init__(
        self,
        host: str | None = None,
        port: int = 6379,
        startup_nodes: Iterable[Any] | None = None,
        *,
        read_from: StrategyLike | None = None,
        read_from_replicas: bool = False,
        load_balancing_strategy: Any = None,
        max_redirections: int = 16,
        retry: Retry | None = None,
        retry_unknown_outcome: bool = False,
        replica_fallback: bool = True,
        max_connections: int | None = 50,
        pool_timeout: float | None = 5.0,
        min_idle: int = 0,
        max_idle_time: float | None = 300.0,
        validate_after: float = 1.0,
        validate_on_return: bool = False,
        refresh_interval: float = 30.0,
        health_interval: float = 1.0,
        failure_threshold: int = 3,
        breaker_cooldown: float = 2.0,
        degraded_latency: float = 0.05,
        command_hook: Any = None,
        track_latency: bool = False,
        address_map: Any = None,
        address_remap: Any = None,
        ssl: bool = False,
        db: int = 0,
        **kwargs: Any,
    ) -> None:
        if db not in (0, "0", None):
            raise errors.ConfigurationError(f"db={db!r}: Redis Cluster only has database 0")
        unknown = set(kwargs) - CONNECTION_KEYS - IGNORED_COMPAT
        if unknown:
            raise errors.ConfigurationError(
                f"unknown option(s) {', '.join(sorted(unknown))} for ClusterClient; see its docstring"
            )
        if max_redirections < 1:
            raise errors.ConfigurationError("max_redirections must be >= 1")
        conn_kwargs = {k: v for k, v in kwargs.items() if k in CONNECTION_KEYS}
        if not {"driver_info", "lib_name", "lib_version"} & set(conn_kwargs):
            conn_kwargs["driver_info"] = default_driver_info()
        conn_kwargs.setdefault("socket_timeout", 5.0)
        conn_kwargs.setdefault("socket_connect_timeout", 2.0)
        if address_remap is not None and address_map is None:
            remap = address_remap
            address_map = lambda h, p: tuple(remap((h, p)))  # RedisCluster's form: one (host, port) tuple
        self._core = Core(
            node_list(startup_nodes, host, port),
            conn_kwargs,
            ssl=ssl,
            address_map=address_map,
            max_connections=max_connections or 2**31,
            pool_timeout=pool_timeout,
            min_idle=min_idle,
            max_idle_time=max_idle_time,
            validate_after=validate_after,
            validate_on_return=validate_on_return,
            refresh_interval=refresh_interval,
            health_interval=health_interval,
            failure_threshold=failure_threshold,
            breaker_cooldown=breaker_cooldown,
            degraded_latency=degraded_latency,
        )
        if read_from is None:
            read_from = READ_REPLICA if (read_from_replicas or load_balancing_strategy is not None) else READ_PRIMARY
        self._strategy: ReadStrategy = make_strategy(read_from)
        self._to_primary = getattr(self._strategy, "name", "") == READ_PRIMARY
        self._refuse_writes = False
        # one shared replica rotation for every `client.reader` view (a new one per view
        # would restart the round-robin at the first replica on every call)
        self._reader_strategy: ReadStrategy = make_strategy(READ_REPLICA)
        self.max_redirections = max_redirections
        # 10 waits of 50 ms doubling to 1 s, each 50-100% of that: 3.8-7.6 s in all, enough to
        # ride out a failover with a 2-5 s cluster-node-timeout
        self.retry = retry or Retry(EqualJitterBackoff(cap=1.0, base=0.05), 10)
        self.retry_unknown_outcome = retry_unknown_outcome
        self.replica_fallback = replica_fallback
        self.response_callbacks = CaseInsensitiveDict(
            get_response_callbacks(  # type: ignore[arg-type]
                user_protocol=conn_kwargs.get("protocol"),
                legacy_responses=conn_kwargs.get("legacy_responses", True),
            )
        )
        self._callbacks: dict[Any, Any] = {}
        self.latency = LatencyRecorder() if track_latency else None
        self._hook = combine(self.latency, command_hook)
        if self._hook is not None:
            self._run = self._run_traced  # type: ignore[method-assign]

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ClusterClient:
        """`redis://[user:pass@]host:port` or `rediss://` (TLS); keywords override the URL."""
        try:
            parsed = parse_url(url)
        except ValueError as e:
            raise errors.ConfigurationError(f"bad cluster URL {redact_url(url)!r}: {e}") from None
        if parsed.pop("path", None):
            raise errors.ConfigurationError("unix sockets cannot reach a cluster: use redis:// or rediss://")
        conn_class = parsed.pop("connection_class", None)
        if conn_class is not None and "SSL" in getattr(conn_class, "__name__", ""):
            parsed["ssl"] = True
        host = parsed.pop("host", "localhost")
        port = parsed.pop("port", 6379)
        parsed.update(kwargs)
        return cls(host, port, **parsed)

    # ---------------------------------------------------------------- views

    def _view(self, strategy: ReadStrategy, refuse_writes: bool) -> ClusterClient:
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.__dict__.pop("_reader_view", None)
        view._strategy = strategy
        view._to_primary = getattr(strategy, "name", "") == READ_PRIMARY
        view._refuse_writes = refuse_writes
        if "_run" in view.__dict__:
            view._run = view._run_traced  # type: ignore[method-assign]  # bound to the view, not the parent
        return view

    @property
    def reader(self) -> ClusterClient:
        """Reads go to replicas round-robin (or this client's non-primary strategy); writes are refused."""
        view = self.__dict__.get("_reader_view")
        if view is None or view._core is not self._core:
            strategy = self._strategy if not self._to_primary else self._reader_strategy
            view = self._reader_view = self._view(strategy, True)
        return view

    @property
    def writer(self) -> ClusterClient:
        """Everything goes to primaries: reads see the writes just made."""
        return self._view(make_strategy(READ_PRIMARY), False)

    def with_read_from(self, read_from: StrategyLike, refuse_writes: bool = False) -> ClusterClient:
        """A view with another read strategy, sharing pools and topology."""
        return self._view(make_strategy(read_from), refuse_writes)

    @property
    def read_from(self) -> str:
        return str(getattr(self._strategy, "name", type(self._strategy).__name__))

    # ---------------------------------------------------------------- lifecycle

    def connect(self) -> ClusterClient:
        """Discover the cluster now instead of on the first command."""
        self._core.ensure()
        return self

    def close(self) -> None:
        """Stop background threads and close every connection. Idempotent."""
        self._core.close()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        t = self._core.topology
        shape = "not connected" if t is None else f"{len(t.shards)} shards, {len(t.nodes)} nodes, v{t.version}"
        return f"<ClusterClient {shape}, read_from={self.read_from}>"

    # ---------------------------------------------------------------- hot path

    def execute_command(self, *args: Any, **options: Any) -> Any:
        core = self._core
        topo = core.topology
        if topo is None or core._pid != current_pid():
            topo = core.ensure()
        cached = core.table._resolved.get(args[0])  # type: ignore[union-attr]
        if cached is not None and not cached[1] and "target_nodes" not in options:
            info = cached[0]
            idx = info.single_key
            if idx and len(args) > idx:
                key = args[idx]
                slot = key_slot(key if type(key) is bytes else encode_key(key))
                return self._keyed(info, slot, args, options, topo)
        return self._dispatch(args, options)

    def _keyed(self, info: CommandInfo, slot: int, args: Sequence[Any], options: dict[str, Any],
               topo: Topology) -> Any:
        if self._refuse_writes and not info.readonly:
            self._refuse(args)
        node = self._pick(topo, slot, info.readonly)
        return self._run(node, info, slot, args, options)

    def _pick(self, topo: Topology, slot: int, readonly: bool) -> Node:
        shard = topo.slot_table[slot]
        if shard is None or shard.primary is None:
            shard = self._wait_for_owner(slot)
        if readonly:
            states = self._core.node_states
            if not self._to_primary:
                return self._strategy.pick(shard, states) or shard.primary  # type: ignore[return-value]
            if self.replica_fallback and states.down and shard.primary.name in states.down:  # type: ignore[union-attr]
                # primary unreachable: a replica's (maybe stale) answer beats an error
                for r in shard.readable:
                    if r.name not in states.down:
                        return r
        return shard.primary  # type: ignore[return-value]

    def _wait_for_owner(self, slot: int) -> Shard:
        """The slot has no primary in our map (a primary failed and no replica was promoted yet,
        or the slot is unassigned): refresh and wait within the retry budget, then give up."""
        core = self._core

        def owner() -> Shard | None:
            t = core.topology
            shard = t.slot_table[slot] if t is not None else None
            return shard if shard is not None and shard.primary is not None else None

        core.refresher.refresh_now()
        for n in range(1, self.retry.get_retries() + 1):
            found = owner()
            if found is not None:
                return found
            core.refresher.request()
            found = self._wait_for(owner, self._backoff(n))
            if found is not None:
                return found
        t = core.topology
        if t is not None and t.slot_table[slot] is not None:  # the shard is known, its primary failed
            raise errors.NodeUnavailableError(
                f"the primary serving slot {slot} failed and no replica was promoted within the retry "
                "budget; retry later, or give ClusterClient a larger retry= for long failovers"
            )
        raise errors.SlotNotCoveredError(
            f"slot {slot} is not served by any primary in the cluster's map "
            "(cluster not fully covered, or its primary failed and no replica took over in time)"
        )

    def _wait_for(self, ready: Callable[[], T | None], seconds: float) -> T | None:
        """Up to `seconds` for `ready()` to give a value, checked again whenever a new map arrives."""
        core = self._core
        deadline = time.monotonic() + seconds
        while True:
            got = ready()
            if got is not None:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            t = core.topology
            core.wait_for_change(t.version if t is not None else 0, remaining)

    def _refuse(self, args: Sequence[Any]) -> None:
        raise errors.WriteOnReaderError(
            f"{command_name(args)} may write: client.reader only sends read-only commands; use client.writer or the client"
        )

    # ---------------------------------------------------------------- the loop

    def _run(self, node: Node | str, info: CommandInfo, slot: int | None, args: Sequence[Any],
             options: dict[str, Any], asking: bool = False) -> Any:
        """Run one command on `node`, following redirections and retrying within the budgets."""
        core = self._core
        hops = failures = 0
        stale_retried = False
        name = node if isinstance(node, str) else node.name
        last_error: BaseException | None = None
        while True:
            st = core.nodes.get(name) or core.state(name)
            if st.open_until and not st.available():
                # breaker open: don't wait on a node known to be failing; the map may move on
                failures += 1
                if failures > self.retry.get_retries():
                    raise errors.NodeUnavailableError(
                        f"{command_name(args)}: node {name} is unavailable (circuit breaker open after "
                        f"{st.failures} consecutive failures: {last_error}); retry later"
                    ) from last_error
                core.refresher.request()
                name = self._after_failure(name, info, slot, failures)
                continue
            pool = st.pool
            conn = pool.acquire()
            sent = False
            fresh = conn._sock is None
            if not fresh and not info.readonly and not self.retry_unknown_outcome:
                # a write cannot be retried once sent: check first, without a round trip, that
                # the server has not closed this pooled connection (CLIENT KILL, restart)
                pool._validate(conn)
                fresh = conn._sock is None
            try:
                if fresh:
                    conn.connect()
                if asking:
                    conn.send_packed_command(pack_many(conn, [("ASKING",), tuple(args)]), False)
                    sent = True
                    conn.read_response()
                else:
                    conn.send_packed_command(pack(conn, args), False)
                    sent = True
                if NEVER_DECODE in options:
                    response = conn.read_response(disable_decoding=True)
                else:
                    response = conn.read_response()
            except rx.AskError as e:  # and MovedError, its subclass
                pool.release(conn)
                last_error = e
                hops += 1
                if hops >= self.max_redirections:
                    break
                moved = isinstance(e, rx.MovedError)
                if moved:  # the slot has a new owner: repoint it now, refresh soon
                    core.on_moved(e.slot_id, e.host, e.port)
                    if st.readonly:  # a replica that does not serve the slot: keep reads off it for now
                        core.node_loading(name)
                name, asking = f"{e.host}:{e.port}", not moved  # ASK: this command only
                continue
            except (rx.TryAgainError, rx.ClusterDownError) as e:
                pool.release(conn)
                last_error = e
                hops += 1
                if hops >= self.max_redirections:
                    break
                if isinstance(e, rx.ClusterDownError):
                    core.refresher.request()
                time.sleep(self._backoff(hops))
                name = self._reroute(name, info, slot)
                continue
            except rx.BusyLoadingError as e:
                pool.release(conn)
                core.node_loading(name)
                last_error = e
                hops += 1
                if hops >= self.max_redirections:
                    break
                if not (info.readonly and slot is not None):
                    time.sleep(self._backoff(hops))
                name = self._reroute(name, info, slot)
                continue
            except rx.ResponseError:
                pool.release(conn)
                if EMPTY_RESPONSE in options:
                    return options[EMPTY_RESPONSE]
                raise
            except (rx.ConnectionError, rx.TimeoutError, OSError) as e:
                pool.discard(conn)
                last_error = e
                if not fresh and not stale_retried and isinstance(e, rx.ConnectionError):
                    # a pooled connection the server had closed (CLIENT KILL, idle timeout, restart):
                    # says nothing about the node yet, and its idle siblings are likely closed too.
                    # Drop them and retry once at once on a fresh connection; only failures of fresh
                    # connections (or timeouts) count towards the breaker, so one CLIENT KILL does
                    # not open it and stall the node's slots for breaker_cooldown.
                    stale_retried = True
                    pool.disconnect_all()
                    if sent and not (info.readonly or self.retry_unknown_outcome):
                        raise _unknown_outcome(args, name, e) from e
                    continue  # same node (with ASKING again if it was an ASK)
                core.node_failed(name, e)
                failures += 1
                if sent and not (info.readonly or self.retry_unknown_outcome):
                    raise _unknown_outcome(args, name, e) from e
                if failures > self.retry.get_retries():
                    raise
                name = self._after_failure(name, info, slot, failures)
                asking = False
                continue
            except BaseException:
                pool.discard(conn)
                raise
            pool.release(conn)
            if failures or st.loading:
                core.node_recovered(name)
            return self._parse(args[0], response, options)
        raise errors.TooManyRedirectionsError(
            f"{command_name(args)} for slot {slot} gave up after {hops} redirections/retries; "
            f"last node {name}, last reply: {last_error}"
        ) from last_error

    def _run_traced(self, node: Node | str, info: CommandInfo, slot: int | None, args: Sequence[Any],
                    options: dict[str, Any], asking: bool = False) -> Any:
        """`_run` with the command hook called once per command (installed only when a hook is set)."""
        hook = self._hook
        assert hook is not None
        name = node if isinstance(node, str) else node.name
        start = time.perf_counter()
        try:
            result = ClusterClient._run(self, node, info, slot, args, options, asking)
        except BaseException as e:
            hook(name, command_name(args), time.perf_counter() - start, e)
            raise
        hook(name, command_name(args), time.perf_counter() - start, None)
        return result

    def _backoff(self, n: int) -> float:
        return float(self.retry._backoff.compute(n))

    def _after_failure(self, name: str, info: CommandInfo, slot: int | None, n: int) -> str:
        """Where to retry after node `name` failed: at once if a map moves the slot elsewhere
        during the n-th backoff, else the same node when the backoff is over."""

        def elsewhere() -> str | None:
            nxt = self._reroute(name, info, slot)
            return nxt if nxt != name else None

        return self._wait_for(elsewhere, self._backoff(n)) or name

    def _reroute(self, name: str, info: CommandInfo, slot: int | None) -> str:
        """Where to try next after a failure: the slot's owner in the (maybe refreshed) map."""
        topo = self._core.topology
        if slot is None or topo is None:
            return name
        try:
            return self._pick(topo, slot, info.readonly).name
        except errors.SlotNotCoveredError:
            return name

    def _parse(self, head: Any, response: Any, options: dict[str, Any]) -> Any:
        cb = self._callbacks.get(head, _MISSING)
        if cb is _MISSING:
            cb = self.response_callbacks.get(str(head).upper() if not isinstance(head, bytes) else head.decode().upper())
            if len(self._callbacks) < 4096:
                self._callbacks[head] = cb
        if options:
            options.pop("keys", None)
            options.pop(EMPTY_RESPONSE, None)
            options.pop(NEVER_DECODE, None)
        if cb is None:
            return response
        return cb(response, **options)

    # ---------------------------------------------------------------- batches

    def pipeline(self, transaction: bool = False, shard_hint: Any = None) -> Any:
        """A cluster pipeline (commands grouped per node, one round trip); `transaction=True` for MULTI/EXEC on one slot."""
        from .pipeline import ClusterPipeline

        return ClusterPipeline(self, transaction=transaction)

    def transaction(self, func: Any, *watches: Any, **kwargs: Any) -> Any:
        """redis-py's transaction(): `func(pipe)` under WATCH of keys in one slot, retried on WatchError."""
        from .pipeline import transaction

        return transaction(self, func, *watches, **kwargs)

    def mget_nonatomic(self, keys: Any, *args: Any) -> list[Any]:
        """MGET across slots, split per slot and sent to all nodes at once; values in key order."""
        from .multikey import mget_nonatomic

        return mget_nonatomic(self, keys, *args)

    def mset_nonatomic(self, mapping: Any) -> list[bool]:
        """MSET across slots, one MSET per slot (not atomic across slots)."""
        from .multikey import mset_nonatomic

        return mset_nonatomic(self, mapping)

    def pubsub(self, **kwargs: Any) -> Any:
        """A `ClusterPubSub` (redis-py's PubSub interface): classic channels on one node, shard channels on their slot's primary."""
        from .pubsub import ClusterPubSub

        return ClusterPubSub(self, **kwargs)


_MISSING = object()


def _unknown_outcome(args: Sequence[Any], node: str, e: BaseException) -> errors.UnknownOutcomeError:
    return errors.UnknownOutcomeError(
        f"{command_name(args)} was sent to {node} but the connection failed before the reply ({e}); "
        "it may or may not have been applied. Not retried because it can write; "
        "pass retry_unknown_outcome=True to retry such commands."
    )
