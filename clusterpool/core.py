"""Shared state of one client and its views: topology, node pools, command table, background work.

The client (`client.py`) decides what to send where; this module owns what
outlives a command: the current Topology (replaced whole, never mutated), a
NodeState per node (pool, breaker, latency), discovery at start, the
refresher and maintenance threads, and events.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx
from redis.connection import AbstractConnection

from . import errors
from .bus import EventBus
from .commands import CommandTable
from .config import Config
from .discovery import Discovery
from .startup import STARTUP_ERRORS, startup_failure, unreachable
from .connection import command_info, make_connection
from .events import RefreshFailed
from .health import HealthChecker
from .nodestate import Health, NodeState
from .nodebook import NodeBook
from .pool import ConnectionPool, current_pid
from .readfrom import NodeStates
from .adoption import plan
from .cachelinks import InvalidationLinks
from .cachestore import CacheStore, slots_reassigned
from .invalidation import LinkBook
from .refresh import Refresher
from .refreshsteps import Candidates, candidates
from .topology import REPLICA, Topology

if TYPE_CHECKING:
    from .observe import Observer

log = logging.getLogger("clusterpool")


class Core(NodeBook):
    """What a client and its views share: the map, node states, discovery, background threads."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.startup_nodes = list(config.startup_nodes)
        self.conn_kwargs: dict[str, Any] = dict(config.connection)  # replaced whole (CLIENT SETNAME), never changed in place
        self.node_kwargs: dict[str, dict[str, Any]] = {}  # per-node connection keywords; replaced whole
        self.discovery = Discovery(config, lambda: self.conn_kwargs)

        self.topology: Topology | None = None
        self.started = 0.0  # when discovery finished (monotonic)
        self._announced: Topology | None = None  # last map a refresh adopted: what events describe
        self.table: CommandTable | None = None
        self.nodes: dict[str, NodeState[ConnectionPool]] = {}  # replaced whole (copy on write)
        self.node_states = NodeStates()  # what read strategies see; replaced whole
        self.bus = EventBus()
        # observe.py: set by client.set_observer(), read on the command path
        self.observer: Observer | None = None
        self.refresher = Refresher(
            self.discovery.view,
            self._refresh_candidates,
            # the last refreshed map, not a MOVED patch of it: views are compared with what
            # events last described, so a patched slot still gets its SlotsMoved
            lambda: self._announced if self._announced is not None else self.topology,
            self.adopt,
            self._refresh_failed,
            interval=config.refresh_interval,
            min_gap=config.refresh_min_gap,
        )
        self._lock = threading.RLock()
        self._version = 0
        self._closed = False
        self.pid = os.getpid()  # the process that discovered; another one (a fork) starts over
        # objects holding their own connections (pubsubs), closed with the client
        self.closables: weakref.WeakSet[Any] = weakref.WeakSet()
        self._changed = threading.Condition(threading.Lock())  # notified when a new map is in use
        self.checker = HealthChecker(self)
        # client-side caching (cache_config=): the store, and each node's invalidation link
        self.cache: CacheStore | None = None
        self.links_book = LinkBook()
        self.links: InvalidationLinks | None = None
        self._cache_heads: dict[Any, bool] = {}
        if config.cache is not None:
            self._start_cache()

    def _start_cache(self) -> None:
        settings = self.config.cache
        assert settings is not None
        self.cache = CacheStore(settings.max_entries, settings.max_bytes, settings.ttl)
        self.links_book = LinkBook()
        self.links = InvalidationLinks(self.cache, self.links_book, self._link_connection, self._in_map)

    def cache_reads(self, head: Any, info: Any) -> bool:
        """Whether reads of command `head` are cached (remembered per head)."""
        verdict = self._cache_heads.get(head)
        if verdict is None:
            settings = self.config.cache
            verdict = settings is not None and settings.caches_read(info)
            if len(self._cache_heads) < 4096:
                self._cache_heads[head] = verdict
        return verdict

    def _link_connection(self, name: str) -> AbstractConnection:
        """A node's invalidation link connection: RESP2 (pub/sub delivery), raw bytes, no READONLY."""
        host, _, port = name.rpartition(":")
        kw = {**self.conn_kwargs, "protocol": 2, "decode_responses": False}
        return make_connection(host, int(port), kw, ssl=self.config.ssl, readonly=False)

    def _in_map(self, name: str) -> bool:
        t = self.topology
        return t is not None and name in t.by_name

    # ---------------------------------------------------------------- discovery

    def ensure(self) -> Topology:
        """The current topology, discovering the cluster on first use (and after fork)."""
        t = self.topology
        if t is not None and self.pid == current_pid():
            return t
        return self.connect()

    def connect(self) -> Topology:
        if self.pid != current_pid():
            self._after_fork()  # before taking a lock another parent thread may have held at fork
        with self._lock:
            if self._closed:
                raise errors.PoolClosedError("client is closed")
            if self.topology is not None:
                return self.topology
            failures: list[str] = []
            for host, port in self.startup_nodes:
                try:
                    topo, table = self._discover(host, port)
                except STARTUP_ERRORS as e:
                    failures.append(startup_failure(f"{host}:{port}", e))
                    continue
                self.table = table
                self.started = time.monotonic()
                self.adopt(topo)
                self._warm()
                self.refresher.start()
                self.checker.start()
                return topo
            raise unreachable(failures)

    def _warm(self) -> None:
        """Open `min_idle` connections to every node before the first command runs."""
        t = self.topology
        if not self.config.min_idle or t is None:
            return
        for node in t.nodes:
            if node.usable:
                try:
                    self.state(node.name).pool.fill(self.config.min_idle)
                except (rx.RedisError, OSError) as e:
                    log.debug("could not warm %s: %s", node.name, e)

    def _discover(self, host: str, port: int) -> tuple[Topology, CommandTable]:
        """The map from one node, and the command table: the specs shipped with the package, with
        COMMAND INFO (on a pooled connection to a primary) for commands they do not know."""
        topo = self.discovery.first_map(host, port)

        def fetch(name: str) -> Any:
            t = self.topology
            if t is None or not t.primaries:
                raise errors.SlotNotCoveredError("no primary to ask COMMAND INFO")
            pool = self.state(random.choice(t.primaries).name).pool
            c = pool.acquire()
            try:
                entry = command_info(c, name)
            except rx.ResponseError:  # refused (an ACL without COMMAND): the connection is fine
                pool.release(c)
                raise
            except BaseException:
                pool.discard(c)
                raise
            pool.release(c)
            return entry

        return topo, CommandTable.bundled_with(fetch)

    def _refresh_candidates(self) -> Candidates:
        """Whom the refresher asks, and whether the map needs watching closely right now."""
        suspects = frozenset(n for n, st in self.nodes.items() if st.failures or not st.available())
        return candidates(self.topology, suspects, tuple(f"{h}:{p}" for h, p in self.startup_nodes))

    def _refresh_failed(self, error: str, tried: tuple[str, ...]) -> None:
        self.bus.publish([RefreshFailed(error, tried)])

    # ---------------------------------------------------------------- topology changes

    def adopt(self, new: Topology) -> None:
        """Swap in a new map, reconcile node states, then publish what changed (adoption.plan)."""
        with self._lock:
            nodes = dict(self.nodes)
            a = plan(self._announced, self.topology, {n: st.readonly for n, st in nodes.items()},
                     new, self._version + 1)
            if a is None:
                return
            self._version = a.topology.version
            reset = [nodes[n] for n in a.readonly]
            for st in reset:
                st.readonly = a.readonly[st.name]  # new connections send READONLY or not
            gone = [nodes.pop(n) for n in a.close]
            self.nodes = nodes
            if self.cache is not None:  # before the new map serves a read: the new owners know nothing of ours
                self.cache.flush_slots(slots_reassigned(self.topology, a.topology))
            self.topology = self._announced = a.topology
            self.publish_states()
            self._notify_changed()
            self.bus.publish(list(a.events))  # under the lock so two refreshes' events keep their order; never blocks
        # socket work outside the lock
        for st in reset:
            st.pool.disconnect_all()  # connections made in the old role are replaced
        for st in gone:
            st.pool.close()
        if self.links is not None:
            for name in a.close:
                self.links.drop(name)

    def on_moved(self, slot: int, host: str, port: int) -> Topology:
        """Point one slot at its new owner at once, and ask for a full refresh."""
        with self._lock:
            t = self.topology
            assert t is not None
            if not t.served_by(slot, host, port):
                self._version += 1
                t = t.with_slot_moved(slot, host, port).with_version(self._version)
                if self.cache is not None:
                    self.cache.flush_slots((slot,))
                self.topology = t
                self._notify_changed()
        self.refresher.request()
        return t

    def _notify_changed(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for_change(self, version: int, timeout: float) -> bool:
        """Sleep up to `timeout` s, waking early once the map's version differs from `version`."""
        with self._changed:
            t = self.topology
            if t is not None and t.version != version:
                return True
            return self._changed.wait(timeout)

    # ---------------------------------------------------------------- nodes

    def state(self, name: str) -> NodeState[ConnectionPool]:
        st = self.nodes.get(name)
        if st is not None:
            return st
        with self._lock:
            st = self.nodes.get(name)
            if st is None:
                if self._closed:
                    raise errors.PoolClosedError("client is closed")
                st = self._new_state(name)
                nodes = dict(self.nodes)
                nodes[name] = st
                self.nodes = nodes
            return st

    def _new_state(self, name: str) -> NodeState[ConnectionPool]:
        host, _, port_s = name.rpartition(":")
        port = int(port_s)
        t = self.topology
        node = t.by_name.get(name) if t is not None else None
        holder: dict[str, NodeState[ConnectionPool]] = {}

        def factory() -> AbstractConnection:
            extra = self.node_kwargs.get(name)  # CLIENT SETNAME / SETINFO made for this node
            kw = {**self.conn_kwargs, **extra} if extra else self.conn_kwargs
            return make_connection(host, port, kw, ssl=self.config.ssl, readonly=holder["st"].readonly,
                                   tracking=tracking)

        book = self.links_book
        tracking = (lambda: book.redirect_for(name)) if self.cache is not None else None

        pool = ConnectionPool(
            name,
            factory,
            max_connections=self.config.max_connections,
            timeout=self.config.pool_timeout,
            validate_after=self.config.validate_after,
            max_idle_time=self.config.max_idle_time,
            validate_on_return=self.config.validate_on_return,
        )
        st = NodeState(name, pool, self.config.failure_threshold, self.config.breaker_cooldown, self.config.degraded_latency)
        st.readonly = node is not None and node.role == REPLICA
        holder["st"] = st
        return st

    def request_refresh(self) -> None:
        self.refresher.request()

    def drop_idle(self, st: NodeState[ConnectionPool]) -> None:
        st.pool.disconnect_all()

    # ---------------------------------------------------------------- maintenance

    def maintain_once(self) -> None:
        """One maintenance pass now, on this thread (see health.HealthChecker)."""
        self.checker.run_once()

    # ---------------------------------------------------------------- lifecycle

    def _after_fork(self) -> None:
        """In a forked child: new threads, new pools; the parent's sockets are left alone."""
        self.pid = os.getpid()  # the process that discovered; another one (a fork) starts over
        self.nodes = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(threading.Lock())
        self.refresher.after_fork()
        self.checker = HealthChecker(self)
        self.bus = EventBus()
        if self.config.cache is not None:  # the parent's links are not this process's
            self._start_cache()
        if self.topology is not None:
            self.refresher.start()
            self.checker.start()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            nodes, self.nodes = self.nodes, {}
        self.checker.stop()
        self.refresher.close()
        if self.links is not None:
            self.links.close()
        for st in nodes.values():
            st.pool.close()
        for obj in list(self.closables):
            try:
                obj.close()
            except Exception as e:  # closing must go on for the rest
                log.debug("closing %r failed: %s", obj, e)
        self.bus.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def health_of(self, name: str) -> Health:
        st = self.nodes.get(name)
        return Health.HEALTHY if st is None else st.health

