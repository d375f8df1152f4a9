"""An idle asyncio client hears a failover without waiting for its refresh interval: the refresh
task's CLUSTER INFO digest (changewatch) moves and triggers a refresh. The sync twin is
tests/test_change_watch.py."""

from __future__ import annotations

import asyncio

import pytest

from clusterpool import RoleChanged
from clusterpool.asyncio import ClusterClient

pytestmark = [pytest.mark.asyncio, pytest.mark.chaos]

NEVER = 3600.0  # no periodic refresh within the test: only the change detector can notice


async def test_an_idle_client_hears_role_changed_after_cluster_failover(fresh_cluster):
    c = fresh_cluster
    primary = c.primaries()[0]
    replica = c.replicas_of(primary)[0]
    async with ClusterClient(startup_nodes=c.startup_nodes, refresh_interval=NEVER) as client:
        async with client.events() as stream:
            await asyncio.to_thread(c.failover, replica)  # the client sends nothing: no MOVED can tell it

            async def promoted() -> RoleChanged:
                async for e in stream:
                    if isinstance(e, RoleChanged) and e.node.port == replica and e.new_role == "primary":
                        return e
                raise AssertionError("the event stream ended")

            heard = await asyncio.wait_for(promoted(), timeout=30)
        assert heard.old_primary == f"{c.host}:{primary}"
