"""Inspection and events on the asyncio ClusterClient: topology(), nodes(), node_for(), stats(), events().

How this works: the snapshots are the sync client's (`inspection.topology_view`,
`nodes_with_role`, `client_stats`), built from the current map and each node's state; a node's
pool counters come from its `NodeConnectionsStats` (`pool_stats_of`), and `stats().connections`
keeps those whole (shared connections' pending replies, dedicated leases). These are plain
methods: before discovery the map is empty. `events()` is an async iterator fed by the
client's EventBus (whose thread delivers to it through the loop's call_soon_threadsafe);
it ends when closed or when the client closes. A mixin of ClusterClient.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import errors
from ..bus import Callback, EventBus
from ..events import Event
from ..snapshots import EMPTY_VIEW, ClientStats, PoolStats, TopologyView, client_stats, nodes_with_role, topology_view
from ..readfrom import ReadStrategy, choose
from ..slots import slot_of
from ..topology import Node, Topology
from .connections import NodeConnections, NodeConnectionsStats

if TYPE_CHECKING:
    from .hedged import AsyncHedging
    from ..config import Config
    from .state import ClusterState

log = logging.getLogger("clusterpool.asyncio")


def pool_stats_of(s: NodeConnectionsStats, max_shared: int) -> PoolStats:
    """One node's connections in the sync client's PoolStats shape: a shared connection is in use
    while it has replies pending; created/closed count both kinds; acquires are commands written
    to shared connections (leases are not counted); no wait time or open errors are tracked."""
    busy = sum(1 for m in s.shared if m.pending)
    d = s.dedicated
    return PoolStats(
        node=s.node,
        max_connections=max_shared + d.max_connections,
        size=s.connections,
        in_use=busy + d.leased,
        idle=len(s.shared) - busy + d.idle,
        waiting=d.waiting,
        created=s.opened_shared + d.opened,
        closed=s.opened_shared - len(s.shared) + d.discarded,
        timeouts=d.timeouts,
        errors=0,
        acquires=s.total("commands"),
        wait_time_total=0.0,
    )


class AsyncEventStream:
    """`async for event in client.events():` the client's events from the moment it was made, in
    order; `await get(timeout)` for one. Ends on `close()` (or `async with`) and when the client closes."""

    def __init__(self, bus: EventBus, closers: set[Callable[[], None]], maxsize: int = 10000) -> None:
        """Subscribes at once; must be made in the event loop that reads it."""
        self._loop = asyncio.get_running_loop()
        self._bus = bus
        self._closers = closers
        self.maxsize = maxsize
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()  # bounded by hand: the end marker always fits
        self._closed = False
        bus.on("*", self._deliver)
        closers.add(self._end_soon)

    def _deliver(self, event: Event) -> None:
        """On the bus's thread: hand the event to the loop."""
        try:
            self._loop.call_soon_threadsafe(self._put, event)
        except RuntimeError:  # the loop is closed
            pass

    def _put(self, event: Event) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= self.maxsize:
            log.warning("event stream full; dropped %s", event.name)
            return
        self._queue.put_nowait(event)

    def _end_soon(self) -> None:
        """The client closed: end after the events already handed to the loop."""
        self._loop.call_soon(self.close)

    def close(self) -> None:
        """Stop receiving; a waiting `async for` ends."""
        if self._closed:
            return
        self._closed = True
        self._bus.off("*", self._deliver)
        self._closers.discard(self._end_soon)
        self._queue.put_nowait(None)

    @property
    def closed(self) -> bool:
        return self._closed

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after `timeout` s or once the stream has ended."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except (TimeoutError, StopAsyncIteration):
            return None

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        if self._closed and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            self._queue.put_nowait(None)  # later calls end too
            raise StopAsyncIteration
        return event

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class InspectionMixin:
    """topology(), nodes(), node_for(), stats(), on()/off()/events() of the asyncio ClusterClient."""

    _state: ClusterState
    _hedging: AsyncHedging | None
    _strategy: ReadStrategy
    _to_primary: bool
    config: Config

    def topology(self) -> TopologyView:
        """A frozen snapshot: shards, slot ranges, nodes with role, health, latency and connection
        counters (an empty view, version 0, before discovery)."""
        state = self._state
        t = state.topology
        if t is None:
            return EMPTY_VIEW
        return topology_view(t, state.nodes, lambda st: pool_stats_of(st.pool.stats(), st.pool.max_shared))

    def nodes(self, role: str | None = None) -> tuple[Node, ...]:
        """Known nodes, optionally only "primary" or "replica" (none before discovery)."""
        t = self._state.topology
        return nodes_with_role(t.nodes if t is not None else (), role)

    def node_for(self, key: Any, read: bool = False) -> Node:
        """The node a command on `key` would go to now (for a read when `read=True`, by this
        client's or view's read strategy); SlotNotCoveredError when no primary serves the slot."""
        t = self._state.topology
        slot = slot_of(key)
        shard = t.slot_table[slot] if t is not None else None
        if shard is None or shard.primary is None:
            hint = "" if t is not None else " (the cluster is not discovered yet: await client.initialize())"
            raise errors.SlotNotCoveredError(f"slot {slot} is not served by any primary in the cluster's map{hint}")
        if not read:
            return shard.primary
        return choose(shard, self._state.node_states, self._strategy, self._to_primary, self.config.replica_fallback)

    def stats(self) -> ClientStats:
        """Connection counters per node and in total, refresh counters, and each node's
        `NodeConnectionsStats` (`.connections`; `.pending`, `.leased` sum them)."""
        state = self._state
        pools = [st.pool for st in state.nodes.values()]
        conns = tuple(p.stats() for p in pools)
        t = state.topology
        hedging = self._hedging
        return client_stats((pool_stats_of(s, p.max_shared) for s, p in zip(conns, pools)), state.refreshes,
                            state.refresh_requests, t.version if t is not None else 0, None, conns,
                            None if state.cache is None else state.cache.stats(),
                            hedges=hedging.hedger.stats() if hedging is not None else None)

    def connections(self, name: str) -> NodeConnections | None:
        """The connections to node `name` ("host:port"), if any were made."""
        st = self._state.nodes.get(name)
        return None if st is None else st.pool

    def on(self, event: str, callback: Callback) -> Callback:
        """Call `callback(event)` for every event named `event` ("*" for all), off the command path
        (on the event thread, not in the loop)."""
        return self._state.bus.on(event, callback)

    def off(self, event: str, callback: Callback) -> None:
        self._state.bus.off(event, callback)

    def events(self, maxsize: int = 10000) -> AsyncEventStream:
        """An async iterator of events from now on: `async for ev in client.events(): ...`."""
        return AsyncEventStream(self._state.bus, self._state.closers, maxsize)

    async def refresh(self) -> Topology | None:
        """Refresh the slot map now (single-flight) and return it."""
        await self._state.ensure()
        return await self._state.refresh_now()

    def slot(self, key: Any) -> int:
        """The slot of `key`, computed locally."""
        return slot_of(key)

    keyslot = slot  # RedisCluster's name
