"""Health bookkeeping over a client's node states, written once for both drivers.

`Core` (sync) and `asyncio.state.ClusterState` keep a map of NodeState per node, replaced
whole; this mixin turns what a command saw (a failure, a recovery, LOADING) into the
node's breaker state, the read strategies' view of it (`node_states`) and events.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .bus import EventBus
from .events import NodeHealthChanged
from .node import NodeState
from .readfrom import NodeStates


class NodeBook:
    """Mixed into a state holder that has `nodes`, `node_states`, `bus` and `request_refresh()`."""

    nodes: Mapping[str, NodeState[Any]]
    node_states: NodeStates
    bus: EventBus

    def request_refresh(self) -> None:
        raise NotImplementedError

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
