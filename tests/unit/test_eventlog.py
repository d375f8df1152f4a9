"""clusterpool.eventlog: which events become log lines, at which level, on which logger."""

from __future__ import annotations

import logging

from clusterpool.eventlog import HEALTH_LOGGER, TOPOLOGY_LOGGER, EventLog, log_line
from clusterpool import events as ev
from clusterpool.topology import Node

A = Node("127.0.0.1", 7000, "primary", "a" * 40)
B = Node("127.0.0.1", 7003, "primary", "b" * 40)


def level(e):
    line = log_line(e)
    return None if line is None else (line.logger, line.level)


def test_a_breaker_opening_is_a_warning_on_the_health_logger():
    e = ev.NodeHealthChanged(A.name, "degraded", "unhealthy", "Connection refused")
    assert level(e) == (HEALTH_LOGGER, logging.WARNING)
    assert A.name in log_line(e).message and "Connection refused" in log_line(e).message


def test_a_first_failure_and_a_recovery_are_info():
    assert level(ev.NodeHealthChanged(A.name, "healthy", "degraded", "timeout")) == (HEALTH_LOGGER, logging.INFO)
    line = log_line(ev.NodeHealthChanged(A.name, "unhealthy", "healthy", "recovered"))
    assert (line.level, "recovered" in line.message) == (logging.INFO, True)


def test_map_changes_are_info_on_the_topology_logger():
    for e in (ev.NodeAdded(A), ev.NodeRemoved(A), ev.RoleChanged(B, "replica", "primary", A.name),
              ev.SlotsMoved(((0, 5460),), A.name, B.name), ev.TopologyRefreshed(4, A.name, 3)):
        assert level(e) == (TOPOLOGY_LOGGER, logging.INFO), e


def test_a_refresh_that_changed_nothing_is_debug():
    assert level(ev.TopologyRefreshed(5, A.name, 0)) == (TOPOLOGY_LOGGER, logging.DEBUG)


def test_a_failed_refresh_is_a_warning():
    assert level(ev.RefreshFailed("no node answered", ("127.0.0.1:7000",))) == (TOPOLOGY_LOGGER, logging.WARNING)


def test_slots_moved_counts_the_slots():
    assert "5461/16384 slots moved from 127.0.0.1:7000 to nobody" in log_line(ev.SlotsMoved(((0, 5460),), A.name, None)).message


def test_a_node_reported_down_is_not_reported_again_until_it_recovers_or_rejoins():
    log = EventLog()
    down = ev.NodeHealthChanged(A.name, "degraded", "unhealthy", "refused")
    assert log.line(down).level == logging.WARNING
    assert log.line(ev.NodeRemoved(A)).level == logging.INFO
    # a state made again for the same address fails again: the same outage, at DEBUG
    assert log.line(ev.NodeHealthChanged(A.name, "healthy", "degraded", "refused")).level == logging.DEBUG
    assert log.line(down).level == logging.DEBUG
    assert log.line(ev.NodeAdded(A)).level == logging.INFO
    assert log.line(down).level == logging.WARNING  # a new outage after it rejoined


def test_a_recovery_ends_the_outage():
    log = EventLog()
    down = ev.NodeHealthChanged(A.name, "degraded", "unhealthy", "refused")
    log.line(down)
    assert log.line(ev.NodeHealthChanged(A.name, "unhealthy", "healthy", "recovered")).level == logging.INFO
    assert log.line(down).level == logging.WARNING


def test_no_line_carries_more_than_names_and_error_texts():
    e = ev.NodeHealthChanged(A.name, "healthy", "unhealthy", "")
    assert log_line(e).message == f"node {A.name} is unhealthy, breaker open (skipped until a probe succeeds)"
