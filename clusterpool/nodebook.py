"""Health bookkeeping over a client's node states, written once for both drivers.

`Core` (sync) and `asyncio.state.ClusterState` keep a map of NodeState per node, replaced
whole; this mixin turns what a command saw (a failure, a recovery, LOADING) and what the
maintenance probe's INFO said (zone, replica link, each replica's lag) into the node's
state, the read strategies' view of it (`node_states`) and events, and applies what a
`policy.Action` says about the cluster (`note_failure`); the drivers supply only the I/O
(`drop_idle`, `on_moved`, `request_refresh`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx

from .bus import EventBus
from .events import Event, NodeHealthChanged, NodeZoneLearned
from .nodestate import NodeState
from .cachestore import CacheStore, FlushReason
from .readfrom import NodeStates, lagging
from .replication import Lag, info_fields, link_down, replica_lags, zone_of
from .topology import REPLICA

if TYPE_CHECKING:
    from .config import Config
    from .observe import Observer
    from .policy import Action, Failure
    from .topology import Topology

INFO_FIRST = ("INFO", "server", "replication")  # a node's first probe: its zone too
INFO_AGAIN = ("INFO", "replication")


class NodeBook:
    """Mixed into a state holder that has `nodes`, `node_states`, `bus` and `request_refresh()`."""

    nodes: Mapping[str, NodeState[Any]]
    node_states: NodeStates
    bus: EventBus
    observer: Observer | None
    config: Config
    topology: Topology | None
    cache: CacheStore | None = None  # client-side caching's store (the asyncio state sets it too)

    def request_refresh(self) -> None:
        raise NotImplementedError

    def on_moved(self, slot: int, host: str, port: int) -> Any:
        """Point one slot at its new owner at once (the driver's map swap)."""
        raise NotImplementedError

    def drop_idle(self, st: NodeState[Any]) -> None:
        """Close the node's idle connections (the driver's I/O)."""
        raise NotImplementedError

    def note_failure(self, action: Action, failure: Failure, st: NodeState[Any], error: BaseException | None) -> None:
        """What a policy action says about the cluster, applied whatever the command does next:
        the node's breaker and idle connections, the map, a refresh."""
        if self.observer is not None:
            self.observer.failure(action, failure, error)
        if action.drop_idle:
            self.drop_idle(st)
        if action.mark_failed:
            self.node_failed(failure.node, error)
        if action.keep_reads_off:
            self.node_loading(failure.node)
        if action.repoint and isinstance(error, rx.MovedError):
            self.on_moved(error.slot_id, error.host, error.port)
        if action.refresh:
            self.request_refresh()

    def node_failed(self, name: str, error: BaseException | None = None) -> None:
        st = self.nodes.get(name)
        if st is None:
            return
        old = st.health
        changed = st.record_failure()
        if changed is not None:
            self.publish_states()
            self.bus.publish([NodeHealthChanged(name, old.value, changed.value, str(error or ""))])
        self.request_refresh()

    def node_recovered(self, name: str) -> None:
        st = self.nodes.get(name)
        if st is None or (st.failures == 0 and not st.loading):
            return
        old = st.health
        changed = st.record_success()
        self.publish_states()
        if changed is not None:
            self.bus.publish([NodeHealthChanged(name, old.value, changed.value, "recovered")])

    def node_loading(self, name: str) -> None:
        """Keep reads off a node for now (it answered LOADING, or MOVED as a replica);
        the next good health probe lets it back in."""
        st = self.nodes.get(name)
        if st is not None:
            st.loading = True
            self.publish_states()

    @staticmethod
    def info_probe(st: NodeState[Any]) -> tuple[str, ...]:
        """The maintenance probe for a node: INFO replication, with INFO server the first time."""
        return INFO_AGAIN if st.zone_known else INFO_FIRST

    def node_info(self, name: str, reply: str) -> None:
        """Take in a node's answer to `info_probe`: its zone, whether a replica's link is down,
        and, from a primary, the lag of each of its replicas."""
        st = self.nodes.get(name)
        if st is None:
            return
        fields = info_fields(reply)
        events: list[Event] = []
        if not st.zone_known and "redis_version" in fields:  # the server section came
            st.zone, st.zone_known = zone_of(fields), True
            if st.zone is not None:
                events.append(NodeZoneLearned(name, st.zone))
        stale = st.readonly and link_down(fields)
        if stale != st.stale:
            st.stale = stale
            if stale:
                self._behind(name)
            events.append(NodeHealthChanged(
                name, "stale" if not stale else st.health.value,
                "stale" if stale else st.health.value, "replica link to primary down" if stale else "link up"))
        t = self.topology
        led = [s for s in t.shards if s.primary is not None and s.primary.name == name] if t is not None else []
        if led:
            events += self._take_lags(replica_lags(fields, led[0].replicas))
        self.publish_states()
        if events:
            self.bus.publish(events)

    def _take_lags(self, lags: Mapping[str, Lag]) -> list[Event]:
        """Record each replica's lag; an event when one crosses the `max_replica_lag` bound."""
        bound = self.config.lag_bound
        events: list[Event] = []
        for name, lag in lags.items():
            st = self.nodes.get(name)
            if st is None:
                continue
            was = st.lag is not None and bound.active and bound.exceeded(st.lag)
            st.lag = lag
            now = bound.active and bound.exceeded(lag)
            if now and not was:
                self._behind(name)
            if now != was:
                why = (f"{lag.bytes} bytes / {lag.seconds} s behind its primary" if lag.linked
                       else "not online at its primary") if now else "caught up"
                events.append(NodeHealthChanged(name, st.health.value if now else "lagging",
                                                "lagging" if now else st.health.value, why))
        return events

    def _behind(self, name: str) -> None:
        """A replica fell behind its primary (link down, or past max_replica_lag): what was cached
        from it may be older than the bound allows, and its invalidations come late."""
        if self.cache is not None:
            self.cache.flush_node(name, FlushReason.REPLICA_BEHIND)

    def publish_states(self) -> None:
        now = time.monotonic()
        nodes = self.nodes
        down = frozenset(n for n, st in nodes.items() if st.loading or st.stale or not st.available(now))
        t = self.topology
        if t is not None and self.config.lag_bound.active:
            lags = {n: st.lag for n, st in nodes.items() if st.lag is not None
                    and (node := t.by_name.get(n)) is not None and node.role == REPLICA}
            down |= lagging(lags, self.config.lag_bound)
        self.node_states = NodeStates(
            down,
            {n: st.latency for n, st in nodes.items() if st.latency is not None},
            {n: st.zone for n, st in nodes.items() if st.zone is not None},
        )
