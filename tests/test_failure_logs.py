"""What operators see in the logs when a primary is killed -9 under load (sync client): one
WARNING for the dead node, INFO lines for the new map and the recovery, no secret, nothing
per command. (The asyncio twin is tests/asyncio/test_async_failure_logs.py.)"""

from __future__ import annotations

import logging

import pytest

from clusterpool import ClusterClient
from clusterpool.eventlog import LOGGERS
from test_failover import Loop, keys_of
from waiting import poll

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

SECRET = "pw-never-logged-7f3a"  # the default user has nopass: AUTH default <any password> succeeds


def lines(caplog, level=None, text=""):
    return [r for r in caplog.records if r.name.startswith("clusterpool")
            and (level is None or r.levelno == level) and text in r.getMessage()]


def test_a_killed_primary_logs_one_warning_then_info_for_the_new_map_and_the_recovery(fresh_cluster, caplog):
    caplog.set_level(logging.INFO, logger="clusterpool")
    c = fresh_cluster
    victim = c.primaries()[0]
    name = f"{c.host}:{victim}"
    keys = keys_of(c, victim, 10, "log") + keys_of(c, c.primaries()[1], 10, "log")
    client = ClusterClient(startup_nodes=c.startup_nodes, username="default", password=SECRET, socket_timeout=1.0,
                           retry_timeout=30.0)
    try:
        def op(i):
            client.set(keys[i % len(keys)], i)

        with Loop(op) as loop:
            loop.wait_ops(50)
            assert lines(caplog, logging.WARNING) == []  # a healthy cluster logs no warning
            c.kill(victim)
            new_primary = c.wait_promoted(victim)
            poll(lambda: lines(caplog, logging.INFO, f"node {c.host}:{new_primary} is now primary"),
                 what="INFO for the promotion")
            loop.wait_ops(200, "operations after the failover")
            c.restart(victim)
            # the restarted node left the map while dead, so it comes back as a node joining it
            poll(lambda: lines(caplog, logging.INFO, f"node {name} (replica) joined the map"),
                 what="INFO for the restarted node")
        ops = loop.count
        warnings = lines(caplog, logging.WARNING)
        about_victim = [r.getMessage() for r in warnings if name in r.getMessage()]
        assert len(about_victim) == 1, about_victim
        assert about_victim[0].startswith(f"node {name} is unhealthy, breaker open")
        assert all(r.name in LOGGERS for r in lines(caplog, logging.INFO) + warnings)
        assert lines(caplog, logging.INFO, "slots moved from")
        # one line per change, not per command: hundreds of operations, a handful of lines
        assert len(lines(caplog)) < ops / 10, [r.getMessage() for r in lines(caplog)]
        assert not [r for r in caplog.records if SECRET in r.getMessage()]
    finally:
        client.close()
