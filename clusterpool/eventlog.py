"""Which events become log lines, at what level, on which logger: decided once for both clients.

Operators read logs, not callbacks. The event bus (both clients publish through it) asks
`log_line(event)` for each event and logs what it returns off the command path, so the
log follows the same state changes the events do: one line per change, never one per
command. Levels:

- WARNING: a node's breaker opened (it is skipped until a probe succeeds), a refresh
  found no node to answer.
- INFO: the map changed (nodes added or removed, roles changed, slots moved, a new map
  version), a node degraded or recovered, a replica's link to its primary went down or up.
- DEBUG: a refresh that changed nothing.

A node reported down stays reported down until it recovers or rejoins the map: a state
the client makes again for it meanwhile (a command or a refresh naming the old address)
fails again, and `EventLog` logs that at DEBUG, so one outage is one WARNING.

Lines carry node names (host:port), roles, slot ranges and error texts; never a
password, URL or command argument.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import events as ev
from .slots import SLOT_COUNT

HEALTH_LOGGER = "clusterpool.health"  # node failures, breakers, recoveries
TOPOLOGY_LOGGER = "clusterpool.topology"  # map changes and failed refreshes
LOGGERS = (HEALTH_LOGGER, TOPOLOGY_LOGGER)


@dataclass(frozen=True, slots=True)
class LogLine:
    logger: str
    level: int
    message: str


def log_line(e: ev.Event) -> LogLine | None:
    """The log line for event `e`, or None when it is not worth one."""
    if isinstance(e, ev.NodeHealthChanged):
        return _health(e)
    if isinstance(e, ev.RefreshFailed):
        tried = f" (tried {', '.join(e.tried)})" if e.tried else ""
        return LogLine(TOPOLOGY_LOGGER, logging.WARNING, f"topology refresh failed: {e.error}{tried}")
    if isinstance(e, ev.RoleChanged):
        took = f", replacing {e.old_primary}" if e.old_primary else ""
        return LogLine(TOPOLOGY_LOGGER, logging.INFO,
                       f"node {e.node.name} is now {e.new_role} (was {e.old_role}{took})")
    if isinstance(e, ev.NodeAdded):
        return LogLine(TOPOLOGY_LOGGER, logging.INFO, f"node {e.node.name} ({e.node.role}) joined the map")
    if isinstance(e, ev.NodeRemoved):
        return LogLine(TOPOLOGY_LOGGER, logging.INFO, f"node {e.node.name} ({e.node.role}) left the map")
    if isinstance(e, ev.SlotsMoved):
        count = sum(b - a + 1 for a, b in e.ranges)
        return LogLine(TOPOLOGY_LOGGER, logging.INFO,
                       f"{count}/{SLOT_COUNT} slots moved from {e.source or 'nobody'} to {e.target or 'nobody'}")
    if isinstance(e, ev.TopologyRefreshed):
        level = logging.INFO if e.changes else logging.DEBUG
        return LogLine(TOPOLOGY_LOGGER, level, f"slot map v{e.version} from {e.source}: {e.changes} change(s)")
    return None


class EventLog:
    """`log_line` with memory of which nodes were reported down (one per client; one thread uses it)."""

    def __init__(self) -> None:
        self._down: set[str] = set()

    def line(self, e: ev.Event) -> LogLine | None:
        """The log line for `e`, demoted to DEBUG when it repeats an outage already reported."""
        line = log_line(e)
        if isinstance(e, ev.NodeAdded):
            self._down.discard(e.node.name)
        elif isinstance(e, ev.NodeHealthChanged) and line is not None:
            if e.node in self._down and e.new != "healthy":
                return LogLine(line.logger, logging.DEBUG, line.message + " (still down)")
            if e.new == "unhealthy":
                self._down.add(e.node)
            elif e.new == "healthy":
                self._down.discard(e.node)
        return line


def _health(e: ev.NodeHealthChanged) -> LogLine:
    why = f": {e.reason}" if e.reason else ""
    if e.new == "unhealthy":
        return LogLine(HEALTH_LOGGER, logging.WARNING,
                       f"node {e.node} is unhealthy, breaker open (skipped until a probe succeeds){why}")
    if e.old == "unhealthy" or (e.old != "healthy" and e.new == "healthy"):
        return LogLine(HEALTH_LOGGER, logging.INFO, f"node {e.node} recovered: {e.old} -> {e.new}{why}")
    return LogLine(HEALTH_LOGGER, logging.INFO, f"node {e.node} {e.old} -> {e.new}{why}")
