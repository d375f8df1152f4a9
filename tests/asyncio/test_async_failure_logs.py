"""What operators see in the logs when a primary is killed -9 under load (asyncio client): one
WARNING for the dead node, INFO lines for the new map and the rejoin, no secret, nothing per
command. (The sync twin is tests/test_failure_logs.py; the lines come from the same bus.)"""

from __future__ import annotations

import asyncio
import logging

import pytest
from async_helpers import tag_on

from clusterpool.asyncio import ClusterClient
from clusterpool.eventlog import LOGGERS

pytestmark = [pytest.mark.asyncio, pytest.mark.chaos]

SECRET = "pw-never-logged-5c1e"  # the default user has nopass: AUTH default <any password> succeeds


def lines(caplog, level=None, text=""):
    return [r for r in caplog.records if r.name.startswith("clusterpool")
            and (level is None or r.levelno == level) and text in r.getMessage()]


async def until(pred, what, timeout=30.0):
    """Poll `pred` on the loop until it is truthy; fail after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.05)
    return what


async def test_a_killed_primary_logs_one_warning_then_info_for_the_new_map(fresh_cluster, caplog):
    caplog.set_level(logging.INFO, logger="clusterpool")
    cluster = fresh_cluster
    victim = cluster.primaries()[0]
    name = f"{cluster.host}:{victim}"
    tags = [tag_on(cluster, victim), tag_on(cluster, cluster.primaries()[1])]
    async with ClusterClient(startup_nodes=cluster.startup_nodes, username="default", password=SECRET,
                             retry_timeout=30.0, retry_unknown_outcome=True, refresh_timeout=0.5) as c:
        stop = asyncio.Event()
        done = [0]

        async def worker(i: int) -> None:
            while not stop.is_set():
                await c.set(f"{tags[i % 2]}:w{i}", done[0])
                done[0] += 1

        workers = asyncio.gather(*(worker(i) for i in range(20)))
        await until(lambda: done[0] >= 200, "traffic")
        assert lines(caplog, logging.WARNING) == []  # a healthy cluster logs no warning
        await asyncio.to_thread(cluster.kill, victim)
        new_primary = await asyncio.to_thread(cluster.wait_promoted, victim, 60)
        await until(lambda: lines(caplog, logging.INFO, f"node {cluster.host}:{new_primary} is now primary"),
                    "INFO for the promotion")
        after = done[0]
        await until(lambda: done[0] >= after + 500, "traffic after the failover")
        await asyncio.to_thread(cluster.restart, victim)
        await until(lambda: lines(caplog, logging.INFO, f"node {name} (replica) joined the map"),
                    "INFO for the restarted node")
        stop.set()
        await workers
    about_victim = [r.getMessage() for r in lines(caplog, logging.WARNING) if name in r.getMessage()]
    assert len(about_victim) == 1, about_victim
    assert about_victim[0].startswith(f"node {name} is unhealthy, breaker open")
    assert all(r.name in LOGGERS for r in lines(caplog, logging.INFO) + lines(caplog, logging.WARNING))
    assert lines(caplog, logging.INFO, "slots moved from")
    assert len(lines(caplog)) < done[0] / 10, [r.getMessage() for r in lines(caplog)]
    assert not [r for r in caplog.records if SECRET in r.getMessage()]
