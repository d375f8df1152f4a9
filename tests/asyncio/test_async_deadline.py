"""retry_timeout is a deadline on every path (issue 29), asyncio client; see tests/deadline_cluster.py
for the cluster these run on and for the margin. Each case runs REPEATS times in its test. At the
deadline an attempt is cancelled; test_async_client_chaos.py checks that no late reply then
reaches another caller (on a cluster of its own: a fresh cluster started while this module's is
up could take the killed node's free port and be joined by this one's nodes)."""

from __future__ import annotations

import time

import pytest
import pytest_asyncio
from deadline_cluster import MARGIN, REPEATS, RETRY_TIMEOUT, broken_cluster, report

from clusterpool.asyncio import ClusterClient
from clusterpool.errors import RetryTimeoutError

pytestmark = [pytest.mark.asyncio, pytest.mark.slow, pytest.mark.chaos]

BOUND = RETRY_TIMEOUT + MARGIN


@pytest.fixture(scope="module")
def broken():
    yield from broken_cluster()


@pytest_asyncio.fixture
async def client(broken):
    c = ClusterClient(startup_nodes=broken.startup, retry_timeout=RETRY_TIMEOUT)
    await c.initialize()
    yield c
    await c.aclose()


async def _gives_up_on_time(what, call, error=RetryTimeoutError):
    times = []
    for _ in range(REPEATS):
        start = time.monotonic()
        with pytest.raises(error):
            await call()
        times.append(time.monotonic() - start)
    print(report(what, times))
    assert max(times) <= BOUND, report(what, times)


# ---- a command ------------------------------------------------------------------------


async def test_a_command_on_an_unserved_slot_gives_up_at_the_deadline(broken, client):
    key = broken.keys(broken.unserved, 1)[0]
    await _gives_up_on_time("asyncio plain SET, slot unserved", lambda: client.set(key, 1))


async def test_a_command_on_a_paused_owner_gives_up_at_the_deadline(broken, client):
    key = broken.keys(broken.paused, 1)[0]
    await _gives_up_on_time("asyncio plain GET, owner paused", lambda: client.get(key))


# ---- a pipeline -----------------------------------------------------------------------


def _pipeline(client, keys, write):
    async def run():
        pipe = client.pipeline()
        for k in keys:
            pipe.set(k, 1) if write else pipe.get(k)
        results = await pipe.execute(raise_on_error=False)
        failed = [r for r in results if isinstance(r, Exception)]
        assert failed, "some commands of the pipeline must have failed"
        raise failed[0]
    return run


async def test_a_pipeline_with_an_unserved_slot_gives_up_at_the_deadline(broken, client):
    keys = broken.keys(broken.unserved, 150) + broken.keys(broken.served, 150)
    await _gives_up_on_time("asyncio pipeline of 300 SETs, slot unserved", _pipeline(client, keys, True))


async def test_a_pipeline_with_a_paused_owner_gives_up_at_the_deadline(broken, client):
    keys = broken.keys(broken.paused, 150) + broken.keys(broken.served, 150)
    await _gives_up_on_time("asyncio pipeline of 300 GETs, owner paused", _pipeline(client, keys, False))


# ---- a transaction --------------------------------------------------------------------


def _transaction(client, key):
    async def run():
        pipe = client.pipeline(transaction=True)
        pipe.set(key, 1)
        return await pipe.execute()
    return run


async def test_a_transaction_on_an_unserved_slot_gives_up_at_the_deadline(broken, client):
    await _gives_up_on_time("asyncio MULTI/EXEC, slot unserved", _transaction(client, broken.keys(broken.unserved, 1)[0]))


async def test_a_transaction_on_a_paused_owner_gives_up_at_the_deadline(broken):
    # EXEC was written and never answered: without the opt-in an UnknownOutcomeError (see the sync test)
    c = ClusterClient(startup_nodes=broken.startup, retry_timeout=RETRY_TIMEOUT, retry_unknown_outcome=True)
    try:
        await _gives_up_on_time("asyncio MULTI/EXEC, owner paused", _transaction(c, broken.keys(broken.paused, 1)[0]))
    finally:
        await c.aclose()


# ---- pub/sub ----------------------------------------------------------------------------


async def test_a_shard_subscribe_on_an_unserved_slot_gives_up_by_the_deadline(broken, client):
    channel = broken.keys(broken.unserved, 1)[0]

    async def run():
        ps = client.pubsub()
        try:
            await ps.ssubscribe(channel)
        finally:
            await ps.aclose()

    await _gives_up_on_time("asyncio SSUBSCRIBE, slot unserved", run, Exception)
