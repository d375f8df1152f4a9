"""The asyncio client's maintenance pass: every `health_interval`, each node the cluster does not
mark failed gets the sync HealthChecker's INFO probe (`NodeBook.info_probe`), all at once.

What an answer means (the node's zone, a replica's link, its replicas' lag) is the shared
`NodeBook.node_info`; a probe that fails or times out counts towards the node's breaker, as a
command's failure does. The pass runs as one task of the client, cancelled by `aclose()`, and
only for a client that reads from replicas or has `client_az` / a lag bound
(`Config.watches_replicas`): a primary-only client keeps no more tasks than before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from redis import exceptions as rx

from ..config import Config
from ..errors import refused
from ..nodestate import NodeState
from ..resp import text
from ..topology import Topology
from .connections import NodeConnections

log = logging.getLogger("clusterpool.asyncio")


class Watched(Protocol):
    """What the pass needs of the client's shared state (asyncio.state.ClusterState)."""

    config: Config
    topology: Topology | None

    @property
    def closed(self) -> bool: ...
    def state(self, name: str) -> NodeState[NodeConnections]: ...
    def info_probe(self, st: NodeState[Any]) -> tuple[str, ...]: ...
    def node_info(self, name: str, reply: str) -> None: ...
    def node_failed(self, name: str, error: BaseException | None = None) -> None: ...
    def node_recovered(self, name: str) -> None: ...


async def watch(state: Watched) -> None:
    """Probe every node each `health_interval` until the client closes."""
    while not state.closed:
        await asyncio.sleep(state.config.health_interval)
        t = state.topology
        if t is None:
            continue
        try:
            await asyncio.gather(*(probe(state, n.name) for n in t.nodes if n.usable))
        except Exception as e:  # the task must survive anything a pass meets
            log.debug("maintenance pass failed: %s", e)


async def probe(state: Watched, name: str) -> None:
    """One INFO probe of one node, unless its breaker is open."""
    st = state.state(name)
    if not st.available():
        return
    try:
        reply = await st.pool.execute(*state.info_probe(st), timeout=min(state.config.refresh_timeout, 1.0))
    except (rx.RedisError, OSError, TimeoutError) as e:
        if not refused(e):
            if not state.closed:
                state.node_failed(name, e)
            return
        reply = ""  # an ACL without INFO: the node answered (zone and lag stay unknown)
    state.node_recovered(name)
    state.node_info(name, text(reply))
