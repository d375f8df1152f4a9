"""Health bookkeeping over a client's node states, written once for both drivers.

`Core` (sync) and `asyncio.state.ClusterState` keep a map of NodeState per node, replaced
whole; this mixin turns what a command saw (a failure, a recovery, LOADING) into the
node's breaker state, the read strategies' view of it (`node_states`) and events, and
applies what a `policy.Action` says about the cluster (`note_failure`); the drivers
supply only the I/O (`drop_idle`, `on_moved`, `request_refresh`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx

from .bus import EventBus
from .events import NodeHealthChanged
from .node import NodeState
from .readfrom import NodeStates

if TYPE_CHECKING:
    from .observe import Observer
    from .policy import Action, Failure


class NodeBook:
    """Mixed into a state holder that has `nodes`, `node_states`, `bus` and `request_refresh()`."""

    nodes: Mapping[str, NodeState[Any]]
    node_states: NodeStates
    bus: EventBus
    observer: Observer | None

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

    def publish_states(self) -> None:
        now = time.monotonic()
        nodes = self.nodes
        down = frozenset(n for n, st in nodes.items() if st.loading or st.stale or not st.available(now))
        self.node_states = NodeStates(down, {n: st.latency for n, st in nodes.items() if st.latency is not None})
