"""clusterpool.giveup: the error each give-up stands for, and how long a slot with no primary is
waited for; without a server or a clock."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from clusterpool import errors
from clusterpool.giveup import give_up_error, no_owner_error, owner_step, owner_wait
from clusterpool.policy import MAX_UNSERVED, Action, Budget, Do, Failure, Give, Kind
from clusterpool.topology import PRIMARY, REPLICA, Node, Shard, Topology

NOW = 100.0
A = Node("10.0.0.1", 7000, PRIMARY, "a")
B = Node("10.0.0.2", 7000, PRIMARY, "b")
B_REPLICA = Node("10.0.0.3", 7000, REPLICA, "b2")


def backoff(n):
    return n / 10


def topo(*shards):
    return Topology(tuple(shards))


SERVED = topo(Shard(((0, 16383),), A, (), "a"))
UNASSIGNED = topo(Shard(((0, 99),), A, (), "a"))  # slot 100 has no shard
TAKEOVER = topo(Shard(((0, 99),), A, (), "a"), Shard((), None, (B_REPLICA,), "b"))  # B failed, its replica waits


@pytest.mark.parametrize("give, cls", [
    (Give.TOO_MANY_REDIRECTIONS, errors.TooManyRedirectionsError),
    (Give.UNKNOWN_OUTCOME, errors.UnknownOutcomeError),
    (Give.UNAVAILABLE, errors.NodeUnavailableError),
    (Give.NOT_SERVED, errors.SlotNotCoveredError),
    (Give.DEADLINE, errors.RetryTimeoutError),
])
def test_each_give_up_has_its_class_chained_to_the_cause(give, cls):
    cause = rx.ConnectionError("refused")
    err = give_up_error(Action(Do.RAISE, Budget(), give=give), Failure(Kind.CONNECTION, "n:1"), 3, 100, ("GET", "k"), cause)
    assert isinstance(err, cls) and err.__cause__ is cause


def test_a_spent_budget_reraises_the_failure_itself():
    cause = rx.ConnectionError("refused")
    assert give_up_error(Action(Do.RAISE, Budget(), give=Give.SPENT), Failure(Kind.CONNECTION, "n:1"), 3, 1,
                         ("GET", "k"), cause) is cause


def test_a_slot_nobody_serves_is_a_cluster_down_error_as_in_redis_cluster():
    assert isinstance(no_owner_error(UNASSIGNED, 100, Budget()), rx.ClusterDownError)
    assert isinstance(no_owner_error(UNASSIGNED, 100, Budget()), rx.SlotNotCoveredError)


def test_at_the_deadline_a_wait_for_an_owner_ends_with_the_deadline_error():
    assert isinstance(no_owner_error(TAKEOVER, 100, Budget(deadline=NOW)), errors.RetryTimeoutError)


def test_the_wait_for_an_owner_is_capped_at_the_deadline():
    b, wait = owner_wait(Budget(deadline=NOW + 0.05), TAKEOVER, NOW, backoff)
    assert wait == pytest.approx(0.05) and b.failures == 1
    assert owner_wait(Budget(deadline=NOW), TAKEOVER, NOW, backoff)[1] is None


def test_with_a_replica_that_may_take_over_the_wait_is_the_retry_budget():
    assert owner_wait(Budget(retries=10, failures=MAX_UNSERVED + 2), TAKEOVER, NOW, backoff)[1] is not None
    assert owner_wait(Budget(retries=10, failures=10), TAKEOVER, NOW, backoff)[1] is None


def test_with_nobody_to_take_over_the_wait_ends_after_max_unserved_waits():
    assert owner_wait(Budget(failures=MAX_UNSERVED - 2), UNASSIGNED, NOW, backoff)[1] is not None
    assert owner_wait(Budget(failures=MAX_UNSERVED - 1), UNASSIGNED, NOW, backoff)[1] is None


def test_with_a_deadline_nobody_to_take_over_waits_until_the_deadline():
    assert owner_wait(Budget(failures=MAX_UNSERVED + 3, deadline=NOW + 1), UNASSIGNED, NOW, backoff)[1] is not None



def test_owner_step_returns_the_shard_when_the_map_names_a_primary():
    found, budget, wait = owner_step(SERVED, 100, Budget(), NOW, backoff)
    assert found is SERVED.slot_table[100] and budget.failures == 0


def test_owner_step_waits_while_a_replica_may_take_over_then_raises_when_spent():
    found, budget, wait = owner_step(TAKEOVER, 100, Budget(retries=2), NOW, backoff)
    assert found is None and budget.failures == 1 and wait == backoff(1)
    with pytest.raises(errors.SlotNotCoveredError):
        owner_step(TAKEOVER, 100, Budget(retries=2, failures=2), NOW, backoff)
