"""The maintenance thread: node health, latency, idle eviction and warm connections.

Every `health_interval` seconds each node the cluster does not mark failed
gets one probe on a connection its pool can spare (never waiting for one):
INFO replication (with INFO server the first time, for the node's zone),
which says whether a replica's link to its primary is up, and, from a
primary, how far each of its replicas is behind (nodebook.node_info). The
round trip feeds the node's latency (for NEAREST and DEGRADED health); a
failure counts towards its breaker; an answer clears a "keep reads off" mark.
Then idle connections older than `max_idle_time` are closed and `min_idle`
are kept open, and one primary is asked CLUSTER INFO: when its digest moved
since the last pass (a failover, a join), a full refresh is requested at once
instead of waiting for `refresh_interval` (changewatch decides).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

from redis import exceptions as rx

from . import errors
from .changewatch import Watch, observe, watch_target
from .events import Event, NodeHealthChanged
from .resp import text

if TYPE_CHECKING:
    from .config import Config
    from .nodestate import NodeState
    from .topology import Topology


class Publisher(Protocol):
    def publish(self, events: list[Event]) -> None: ...


class Maintained(Protocol):
    """What the maintenance thread needs of the shared state it looks after (the Core)."""

    @property
    def config(self) -> Config: ...
    @property
    def topology(self) -> Topology | None: ...
    @property
    def bus(self) -> Publisher: ...

    def state(self, name: str) -> NodeState: ...
    def node_failed(self, name: str, error: BaseException | None = None) -> None: ...
    def publish_states(self) -> None: ...
    def request_refresh(self) -> None: ...
    def info_probe(self, st: NodeState) -> tuple[str, ...]: ...
    def node_info(self, name: str, reply: str) -> None: ...

log = logging.getLogger("clusterpool")


class HealthChecker:
    def __init__(self, core: Maintained) -> None:
        self.core = core
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch = Watch()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="clusterpool-maintenance", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.core.config.health_interval):
            try:
                self.run_once()
            except Exception as e:  # the thread must survive anything a pass meets
                log.debug("maintenance pass failed: %s", e)

    def run_once(self) -> None:
        """One pass over the nodes: probe, evict stale idle connections, keep min_idle warm."""
        core = self.core
        t = core.topology
        if t is None:
            return
        # every node's state first: a primary's answer records the lag of replicas probed after it
        states = [core.state(node.name) for node in t.nodes if node.usable]
        for st in states:
            if self._stop.is_set():
                return
            self._probe(st)
            st.pool.evict_idle(keep=core.config.min_idle)
            if core.config.min_idle and st.available():
                try:
                    st.pool.fill(core.config.min_idle)
                except (rx.RedisError, OSError) as e:
                    log.debug("could not warm %s: %s", st.name, e)
        core.publish_states()
        self._watch_once(t)

    def _watch_once(self, t: Topology) -> None:
        """CLUSTER INFO from one primary; a moved digest requests a refresh now (changewatch)."""
        core = self.core
        skip = {n.name for n in t.nodes if not core.state(n.name).available()}
        name = watch_target(t, skip, self._watch.node)
        if name is None or self._stop.is_set():
            return
        answer = self._ask(core.state(name), "CLUSTER", "INFO")
        if answer is not None:
            self._watch, moved = observe(self._watch, name, answer[0])
            if moved:
                core.request_refresh()

    def _ask(self, st: NodeState, *command: str) -> tuple[str, float] | None:
        """One command on a connection the pool can spare: (reply text, seconds), or None when
        the pool is busy (the node is in use; asked another round) or the node failed (counted)."""
        try:
            conn = st.pool.try_acquire()
        except (rx.RedisError, OSError):
            conn = None
        if conn is None:
            return None
        start = time.perf_counter()
        try:
            conn.send_command(*command, check_health=False)
            reply = conn.read_response(timeout=min(self.core.config.refresh_timeout, 1.0))
        except Exception as e:  # any other failure of the probe is the node's failure
            if not errors.refused(e):
                conn.disconnect()
                st.pool.release(conn)
                self.core.node_failed(st.name, e)
                return None
            reply = ""  # an ACL refusing the command: the node answered, so it is up (the rest unknown)
        elapsed = time.perf_counter() - start
        st.pool.release(conn)
        return text(reply), elapsed

    def _probe(self, st: NodeState) -> None:
        core = self.core
        answer = self._ask(st, *core.info_probe(st))
        if answer is None:
            return
        info, elapsed = answer
        if st.loading:  # it answered; a node still loading says so again on the next read
            st.loading = False
        core.node_info(st.name, info)  # zone, replica link, its replicas' lag (nodebook)
        old = st.health
        changed = st.record_latency(elapsed) if not st.failures else st.record_success()
        if changed is not None:
            core.bus.publish([NodeHealthChanged(st.name, old.value, changed.value, "ping")])
