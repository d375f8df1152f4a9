"""Hedged replica reads on the asyncio client: one replica is late (a DelayProxy), reads routed to
it are hedged to the other replica within the budget; writes never are; the late replies are read
and dropped by the shared connections, never handed to another caller."""

from __future__ import annotations

import asyncio

import pytest

from async_helpers import fd_count, other_tasks, until
from clusterpool import HedgePolicy
from clusterpool.asyncio import ClusterClient
from hedge_setup import LATE, late_replica_cluster, pick

pytestmark = pytest.mark.asyncio

EAGER = HedgePolicy(delay=0.005, budget=1.0)


@pytest.fixture(scope="module")
def late():
    with late_replica_cluster() as setup:
        yield setup


async def _fill(client, late, prefix, n):
    """Keys with values on both replicas, and a shared connection open to the fast one (a hedge
    never waits for a connection to open)."""
    keys = [f"{prefix}:{i}" for i in range(n)]
    for i, k in enumerate(keys):
        await client.writer.set(k, f"v{i}")
    await client.writer.wait(2, 1000)
    await client.with_read_from(pick(late.fast)).get(keys[0])
    return keys


async def test_a_late_replica_read_is_answered_right_and_hedged(late):
    async with ClusterClient(**late.options(read_from=late.pick_late, hedge=EAGER)) as c:
        keys = await _fill(c, late, "right", 20)
        before = c.stats().hedges
        assert [await c.get(k) for k in keys] == [f"v{i}".encode() for i in range(20)]
        h = c.stats().hedges
        assert (h.reads - before.reads, h.sent - before.sent) == (20, 20)
        assert h.won >= 1


async def test_writes_are_never_hedged(late):
    async with ClusterClient(**late.options(read_from=late.pick_late, hedge=EAGER)) as c:
        for i in range(20):
            await c.set(f"w:{i}", i)
        assert c.stats().hedges.reads == 0


async def test_the_budget_caps_hedges(late):
    policy = HedgePolicy(delay=0.005, budget=0.0, burst=3)
    async with ClusterClient(**late.options(read_from=late.pick_late, hedge=policy)) as c:
        keys = await _fill(c, late, "budget", 10)
        before = c.stats().hedges
        assert [await c.get(k) for k in keys] == [f"v{i}".encode() for i in range(10)]
        h = c.stats().hedges
        assert (h.reads - before.reads, h.sent, h.suppressed) == (10, 3, 7)


async def test_concurrent_hedged_reads_each_get_their_own_reply(late):
    async with ClusterClient(**late.options(read_from=late.pick_late, hedge=EAGER)) as c:
        keys = await _fill(c, late, "conc", 50)
        for _ in range(3):
            got = await asyncio.gather(*(c.get(k) for k in keys))
            assert got == [f"v{i}".encode() for i in range(50)]
        assert c.stats().hedges.won >= 1
        dropped = lambda: sum(n.total("dropped") for n in c.stats().connections)  # noqa: E731
        await until(lambda: dropped() >= c.stats().hedges.won, what="late replies read and dropped")
        late.proxy.delay = 0.0  # the late replica catches up: its shared connections answer in order
        try:
            got = await asyncio.gather(*(c.with_read_from(pick(late.late)).get(k) for k in keys))
            assert got == [f"v{i}".encode() for i in range(50)]
        finally:
            late.proxy.delay = LATE


async def test_a_hedged_client_closes_every_socket_and_task(late):
    before = fd_count()
    c = ClusterClient(**late.options(read_from=late.pick_late, hedge=EAGER))
    keys = await _fill(c, late, "close", 10)
    for k in keys:
        await c.get(k)
    assert c.stats().hedges.sent >= 1
    await c.aclose()
    assert not other_tasks()
    await until(lambda: fd_count() <= before, what=f"socket count back to {before}")
