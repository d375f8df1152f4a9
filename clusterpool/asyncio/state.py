"""What an asyncio client and its views share: the map, node connections and breakers, refresh, events.

How this works: the current Topology is replaced whole, never mutated; each node has a
`NodeState` (the sync client's breaker) whose `pool` is that node's `NodeConnections`.
Discovery and refreshes ask nodes with `probe.read_view`; which map to adopt is
`agreement.decide`'s, what adopting changes is `adoption.plan`'s, whom to ask and in
which order is `refreshsteps`' (`candidates`, `refresh_steps`), all shared with the sync
client. One refresh task per client waits for a request or the interval (fast while a
primary fails), asking one primary CLUSTER INFO every `health_interval` meanwhile: when
its digest moves (changewatch), it refreshes at once. Commands waiting for a new map wait on an asyncio.Event replaced at
every change.
`aclose()` cancels that task and closes every node's connections; nothing outlives it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from redis import exceptions as rx

from .. import errors
from ..adoption import plan
from ..bus import EventBus
from ..changewatch import Watch, observe, watch_target
from ..observe import Observer
from ..commands import CommandTable
from ..config import Config
from ..startup import STARTUP_ERRORS, startup_failure, unreachable
from ..events import RefreshFailed
from ..naming import Renaming
from ..nodestate import NodeState
from ..nodebook import NodeBook
from ..readfrom import NodeStates
from ..refreshsteps import FAST_INTERVAL, FAST_WINDOW, Answers, Candidates, adrive, candidates, next_wait, refresh_steps
from ..resp import text
from ..topology import REPLICA, Topology
from ..viewquery import Queries
from .cachestate import CachingMixin
from .commandinfo import CommandLookup
from .connections import NodeConnections
from .probe import node_settings, read_view
from .settings import NodeSettings
from .watch import watch

log = logging.getLogger("clusterpool.asyncio")

AsyncNode = NodeState[NodeConnections]


class ClusterState(CachingMixin, NodeBook):
    """Shared state of one asyncio client (see the module docstring)."""

    def __init__(self, config: Config, *, max_shared: int = 2, sample_size: int = 3, max_views: int = 16,
                 min_gap: float | None = None, fast_interval: float = FAST_INTERVAL,
                 fast_window: float = FAST_WINDOW) -> None:
        """No I/O: the first command (or `connect()`) discovers the cluster."""
        self.config = config
        self.conn_kwargs = dict(config.connection)  # replaced whole (CLIENT SETNAME), never changed in place
        self.node_kwargs: dict[str, dict[str, Any]] = {}  # per-node connection keywords; replaced whole
        self.startup = tuple(f"{h}:{p}" for h, p in config.startup_nodes)
        self.max_shared = max_shared
        self.sample_size = sample_size
        self.max_views = max_views
        self.min_gap = config.refresh_min_gap if min_gap is None else min_gap
        self.fast_interval = fast_interval
        self.fast_window = fast_window
        self.topology: Topology | None = None
        self._announced: Topology | None = None
        self.table: CommandTable | None = None
        self.nodes: dict[str, AsyncNode] = {}  # replaced whole (copy on write)
        self.node_states = NodeStates()
        self.bus = EventBus()
        # observe.py: set by client.set_observer(), read on the command path
        self.observer: Observer | None = None
        self.refreshes = 0
        self.refresh_requests = 0
        self.commands = CommandLookup()  # COMMAND INFO for commands the shipped specs lack
        self.queries = Queries()  # per node: the discovery commands it answers, when not the default
        self.closers: set[Callable[[], None]] = set()  # called at aclose() (event streams end)
        self.last_decision = ""
        self._version = 0
        self._closed = False
        self._changed: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._refresh_lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None  # watch.py: INFO probes every health_interval
        self._closing: set[asyncio.Task[Any]] = set()
        self._last = 0.0
        self._urgent_since: float | None = None
        self._digest = Watch()  # changewatch: the last CLUSTER INFO digest
        self._start_cache(config)  # client-side caching (cache= / cache_config=): cachestate.py

    # ---- discovery -------------------------------------------------------------------

    async def ensure(self) -> Topology:
        """The current map, discovering the cluster on first use."""
        t = self.topology
        return t if t is not None else await self.connect()

    async def connect(self) -> Topology:
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self._closed:
                raise errors.PoolClosedError("client is closed")
            if self.topology is not None:
                return self.topology
            failures: list[str] = []
            for name in self.startup:
                try:
                    view = await read_view(self.config, self.conn_kwargs, name, self.queries)
                except STARTUP_ERRORS as e:
                    failures.append(startup_failure(name, e))
                    continue
                # the shipped specs; the client asks COMMAND INFO for a command they lack (commandinfo.py)
                self.table = self.commands.table()
                self.adopt(view.topology)
                self._wake = asyncio.Event()
                loop = asyncio.get_running_loop()
                self._task = loop.create_task(self._refresh_loop(), name="clusterpool-async-refresh")
                if self.config.watches_replicas:
                    self._watch = loop.create_task(watch(self), name="clusterpool-async-maintenance")
                return view.topology
            raise unreachable(failures)

    # ---- nodes -----------------------------------------------------------------------

    def state(self, name: str) -> AsyncNode:
        st = self.nodes.get(name)
        if st is not None:
            return st
        if self._closed:
            raise errors.PoolClosedError("client is closed")
        t = self.topology
        node = t.by_name.get(name) if t is not None else None
        readonly = node is not None and node.role == REPLICA
        c = self.config
        st = NodeState(name, self._connections(name, readonly), c.failure_threshold, c.breaker_cooldown,
                       c.degraded_latency)
        st.readonly = readonly
        self.nodes = {**self.nodes, name: st}
        if self.links is not None:
            self.links.watch(name)
        return st

    def _connections(self, name: str, readonly: bool) -> NodeConnections:
        links = self.links
        return NodeConnections(self._settings(name, readonly), max_shared=self.max_shared,
                               max_connections=self.config.max_connections, pool_timeout=self.config.pool_timeout,
                               tracking=None if links is None else links.tracking)

    def _settings(self, name: str, readonly: bool) -> NodeSettings:
        host, _, port = name.rpartition(":")
        extra = self.node_kwargs.get(name)  # CLIENT SETNAME / SETINFO made for this node
        kw = {**self.conn_kwargs, **extra} if extra else self.conn_kwargs
        return node_settings(self.config, kw, host, int(port), readonly=readonly)

    async def rename(self, change: Renaming, command: bytes) -> None:
        """Take CLIENT SETNAME / SETINFO's new keywords (naming.plan) and give them to the
        connections of the nodes it resets: shared ones get `command` in place, new ones
        open with it."""
        self.conn_kwargs, self.node_kwargs = change.conn_kwargs, change.node_kwargs
        nodes = [st for st in (self.nodes.get(n) for n in change.reset) if st is not None]
        await asyncio.gather(*(st.pool.rename(command, self._settings(st.name, st.readonly)) for st in nodes))

    # ---- map changes -----------------------------------------------------------------

    def adopt(self, new: Topology) -> None:
        """Swap in a new map (adoption.plan says what changes), then publish its events."""
        nodes = dict(self.nodes)
        a = plan(self._announced, self.topology, {n: st.readonly for n, st in nodes.items()}, new, self._version + 1)
        if a is None:
            return
        self._version = a.topology.version
        for name, flag in a.readonly.items():
            st = nodes[name]
            old, st.readonly = st.pool, flag
            st.pool = self._connections(name, flag)  # connections made in the old role are replaced
            self._spawn(old.retire(self.retire_grace()))
        for name in a.close:
            self._close_later(nodes.pop(name).pool)
        self.nodes = nodes
        self._cache_follows(self.topology, a.topology, a.close)
        self.topology = self._announced = a.topology
        self.publish_states()
        self._notify_changed()
        self.bus.publish(list(a.events))

    def on_moved(self, slot: int, host: str, port: int) -> None:
        """Point one slot at its new owner at once, and ask for a full refresh."""
        t = self.topology
        assert t is not None
        if not t.served_by(slot, host, port):
            if self.cache is not None:
                self.cache.flush_slots([slot])
            self._version += 1
            self.topology = t.with_slot_moved(slot, host, port).with_version(self._version)
            self._notify_changed()
        self.request_refresh()

    def _notify_changed(self) -> None:
        ev, self._changed = self._changed, None
        if ev is not None:
            ev.set()

    async def wait_for_change(self, version: int, timeout: float) -> None:
        """Up to `timeout` s, returning early once the map's version differs from `version`."""
        t = self.topology
        if t is not None and t.version != version:
            return
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            pass

    # ---- refresh ---------------------------------------------------------------------

    def request_refresh(self) -> None:
        """Ask for a refresh soon; never blocks."""
        self.refresh_requests += 1
        if self._wake is not None:
            self._wake.set()

    def drop_idle(self, st: AsyncNode) -> None:
        st.pool.dedicated.drop_idle()

    def _candidates(self) -> Candidates:
        suspects = frozenset(n for n, st in self.nodes.items() if st.failures or not st.available())
        return candidates(self.topology, suspects, self.startup)

    def _next_wait(self) -> float:
        wait, self._urgent_since = next_wait(self.config.refresh_interval, self._candidates().urgent,
                                             self._urgent_since, time.monotonic(), self.fast_interval, self.fast_window)
        return wait

    async def _refresh_loop(self) -> None:
        wake = self._wake
        assert wake is not None
        while not self._closed:
            woke = await self._wait(wake, time.monotonic() + self._next_wait())
            gap = self._last + self.min_gap - time.monotonic()
            if woke and gap > 0:
                await asyncio.sleep(gap)
            wake.clear()
            try:
                await self.refresh_now()
                await self._probe_down()
            except Exception as e:  # never let the task die
                log.debug("background refresh failed: %s", e)

    async def _wait(self, wake: asyncio.Event, due: float) -> bool:
        """Until a request (True), the cluster's digest moving (True) or `due` (False)."""
        while (left := due - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(min(left, self.config.health_interval)):
                    await wake.wait()
                return True
            except TimeoutError:
                if time.monotonic() < due and await self._cluster_moved():
                    return True
        return False

    async def _cluster_moved(self) -> bool:
        """CLUSTER INFO from one primary: has its digest moved since the last time (changewatch)?"""
        skip = {n for n, st in self.nodes.items() if not st.available()}
        name = watch_target(self.topology, skip, self._digest.node)
        if name is None or self._closed:
            return False
        try:
            async with asyncio.timeout(self.config.refresh_timeout):
                reply = await self.state(name).pool.execute("CLUSTER", "INFO")
        except (rx.RedisError, OSError, TimeoutError) as e:  # the node's failure, as a command's
            if not errors.refused(e):  # an ACL refusing CLUSTER INFO: up, but no digest to watch
                self.node_failed(name, e)
            return False
        self._digest, moved = observe(self._digest, name, text(reply))
        return moved

    async def refresh_now(self) -> Topology | None:
        """One refresh now; concurrent callers wait for the one in progress."""
        if self._refresh_lock is None:
            self._refresh_lock = asyncio.Lock()
        if self._refresh_lock.locked():
            async with self._refresh_lock:
                return self.topology
        async with self._refresh_lock:
            try:
                return await self._refresh()
            finally:
                self._last = time.monotonic()

    async def _refresh(self) -> Topology | None:
        """The sync Refresher's steps (refreshsteps.refresh_steps), asked with tasks."""
        self.refreshes += 1
        current = self._announced if self._announced is not None else self.topology
        outcome = await adrive(refresh_steps(current, self._candidates(), self.sample_size, self.max_views),
                               self._ask)
        self.last_decision = outcome.decision.reason
        if outcome.topology is None:
            if outcome.unanswered:
                self.bus.publish([RefreshFailed("no node answered CLUSTER SHARDS", outcome.answers.errors)])
            return current
        self.adopt(outcome.topology)
        return outcome.topology

    async def _ask(self, names: tuple[str, ...]) -> Answers:
        results = await asyncio.gather(*(read_view(self.config, self.conn_kwargs, n, self.queries) for n in names),
                                       return_exceptions=True)
        for r in results:
            if isinstance(r, asyncio.CancelledError):
                raise r
        return Answers.of(names, results)

    async def _probe_down(self) -> None:
        """PING (all at once) the nodes kept off reads or with failures counted whose breaker lets
        them be tried: an answer within the refresh timeout lets them back in."""
        names = [n for n, st in self.nodes.items() if (st.loading or st.failures) and st.available()]
        if names:
            await asyncio.gather(*(self._ping(n) for n in names))

    async def _ping(self, name: str) -> None:
        st = self.nodes.get(name)
        if st is None:
            return
        try:
            async with asyncio.timeout(self.config.refresh_timeout):  # the connect too, not only the reply
                await st.pool.execute("PING")
        except (rx.RedisError, OSError, TimeoutError) as e:
            if not errors.refused(e):  # an ACL without PING: the node answered, so it is up
                return
        self.node_recovered(name)

    # ---- lifecycle -------------------------------------------------------------------

    def retire_grace(self) -> float:
        """How long replaced connections may keep what is in flight: one reply's timeout."""
        timeout = self.conn_kwargs.get("socket_timeout")
        return float(timeout) if isinstance(timeout, int | float) and timeout > 0 else 5.0

    def _close_later(self, conns: NodeConnections) -> None:
        self._spawn(conns.aclose())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Stop the refresh task and close every connection; waits for all of it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._task, self._watch) if t is not None]
        self._task = self._watch = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.links is not None:
            await self.links.aclose()
        nodes, self.nodes = self.nodes, {}
        await asyncio.gather(*(st.pool.aclose() for st in nodes.values()), *self._closing, return_exceptions=True)
        self.bus.close()
        for end in list(self.closers):
            end()
