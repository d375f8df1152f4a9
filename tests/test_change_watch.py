"""An idle sync client hears a failover without waiting for its refresh interval: the maintenance
thread's CLUSTER INFO digest (changewatch) moves and triggers a refresh. The asyncio twin is
tests/asyncio/test_async_change_watch.py."""

from __future__ import annotations

import pytest

from clusterpool import ClusterClient, RoleChanged
from waiting import poll

pytestmark = [pytest.mark.chaos]

NEVER = 3600.0  # no periodic refresh within the test: only the change detector can notice


def test_an_idle_client_hears_role_changed_after_cluster_failover(fresh_cluster):
    c = fresh_cluster
    primary = c.primaries()[0]
    replica = c.replicas_of(primary)[0]
    client = ClusterClient(startup_nodes=c.startup_nodes, refresh_interval=NEVER)
    try:
        client.connect()
        with client.events() as stream:
            refreshes = client.stats().refreshes
            c.failover(replica)  # the client sends nothing from here on: no MOVED can tell it
            heard: list[RoleChanged] = []

            def promoted():
                e = stream.get(timeout=0.5)
                if isinstance(e, RoleChanged) and e.node.port == replica and e.new_role == "primary":
                    heard.append(e)
                return heard

            poll(promoted, timeout=30, what="role_changed for the promoted replica")
        assert heard[0].old_primary == f"{c.host}:{primary}"
        assert client.stats().refreshes > refreshes
    finally:
        client.close()
