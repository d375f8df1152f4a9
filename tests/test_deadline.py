"""retry_timeout is a deadline on every path (issue 29), sync client; see deadline_cluster.py for
the cluster these run on and for the margin. Each case runs REPEATS times in its test."""

from __future__ import annotations

import pytest
from deadline_cluster import MARGIN, REPEATS, RETRY_TIMEOUT, broken_cluster, report, timed

from clusterpool import ClusterClient
from clusterpool.errors import RetryTimeoutError

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

BOUND = RETRY_TIMEOUT + MARGIN


@pytest.fixture(scope="module")
def broken():
    yield from broken_cluster()


@pytest.fixture
def client(broken):
    c = ClusterClient(startup_nodes=broken.startup, retry_timeout=RETRY_TIMEOUT)
    c.connect()
    try:
        yield c
    finally:
        c.close()


def _gives_up_on_time(what, call, error=RetryTimeoutError):
    times = []
    for _ in range(REPEATS):
        took, raised, _ = timed(call)
        assert isinstance(raised, error), (what, raised)
        times.append(took)
    print(report(what, times))
    assert max(times) <= BOUND, report(what, times)


# ---- a command ------------------------------------------------------------------------


def test_a_command_on_an_unserved_slot_gives_up_at_the_deadline(broken, client):
    key = broken.keys(broken.unserved, 1)[0]
    _gives_up_on_time("plain SET, slot unserved", lambda: client.set(key, 1))


def test_a_command_on_a_paused_owner_gives_up_at_the_deadline(broken, client):
    key = broken.keys(broken.paused, 1)[0]
    _gives_up_on_time("plain GET, owner paused", lambda: client.get(key))


# ---- a pipeline -----------------------------------------------------------------------


def _pipeline(client, keys, write):
    def run():
        pipe = client.pipeline()
        for k in keys:
            pipe.set(k, 1) if write else pipe.get(k)
        results = pipe.execute(raise_on_error=False)
        failed = [r for r in results if isinstance(r, Exception)]
        assert failed, "some commands of the pipeline must have failed"
        raise failed[0]
    return run


def test_a_pipeline_with_an_unserved_slot_gives_up_at_the_deadline(broken, client):
    keys = broken.keys(broken.unserved, 150) + broken.keys(broken.served, 150)
    _gives_up_on_time("pipeline of 300 SETs, slot unserved", _pipeline(client, keys, True))


def test_a_pipeline_with_a_paused_owner_gives_up_at_the_deadline(broken, client):
    keys = broken.keys(broken.paused, 150) + broken.keys(broken.served, 150)
    _gives_up_on_time("pipeline of 300 GETs, owner paused", _pipeline(client, keys, False))


# ---- a transaction --------------------------------------------------------------------


def _transaction(client, key):
    def run():
        pipe = client.pipeline(transaction=True)
        pipe.set(key, 1)
        return pipe.execute()
    return run


def test_a_transaction_on_an_unserved_slot_gives_up_at_the_deadline(broken, client):
    _gives_up_on_time("MULTI/EXEC, slot unserved", _transaction(client, broken.keys(broken.unserved, 1)[0]))


def test_a_transaction_on_a_paused_owner_gives_up_at_the_deadline(broken):
    # EXEC was written and never answered: without the opt-in this is an UnknownOutcomeError
    # (a write that may have run), at the deadline too; with it, the deadline's error
    with ClusterClient(startup_nodes=broken.startup, retry_timeout=RETRY_TIMEOUT, retry_unknown_outcome=True) as c:
        _gives_up_on_time("MULTI/EXEC, owner paused", _transaction(c, broken.keys(broken.paused, 1)[0]))


# ---- pub/sub ----------------------------------------------------------------------------


def test_a_shard_subscribe_on_an_unserved_slot_gives_up_by_the_deadline(broken, client):
    channel = broken.keys(broken.unserved, 1)[0]

    def run():
        ps = client.pubsub()
        try:
            ps.ssubscribe(channel)
        finally:
            ps.close()

    _gives_up_on_time("SSUBSCRIBE, slot unserved", run, Exception)
