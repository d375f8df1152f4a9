"""clusterpool.policy.decide: every failure kind x read/write x sent/unsent x pooled/fresh x
budget state, without a server or a clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from redis import exceptions as rx

from clusterpool import errors
from clusterpool.asyncio.errors import CommandTimeoutError, LostConnectionError
from clusterpool.policy import MAX_UNSERVED, Action, Budget, Do, Failure, Give, Kind, answered, decide, failure_of

NOW = 100.0


def backoff(n):
    return n / 10


def run(kind, budget=None, *, sent=False, fresh=True, readonly=False, retry_unknown=False, now=NOW, **kw) -> Action:
    f = Failure(kind, "n:1", sent=sent, fresh=fresh, target="n:2")
    return decide(f, budget or Budget(), now=now, backoff=backoff, readonly=readonly,
                  retry_unknown=retry_unknown, **kw)


REDIRECT_KINDS = [Kind.MOVED, Kind.ASK, Kind.TRYAGAIN, Kind.CLUSTERDOWN, Kind.UNSERVED, Kind.LOADING]
FAILURE_KINDS = [Kind.CONNECTION, Kind.TIMEOUT]


# ---------------------------------------------------------------- redirections


def test_moved_resends_to_the_new_owner_and_repoints_the_slot():
    a = run(Kind.MOVED)
    assert (a.do, a.node, a.asking, a.repoint) == (Do.REDIRECT, "n:2", False, True)
    assert a.budget.hops == 1 and not a.keep_reads_off


def test_moved_from_a_replica_keeps_reads_off_it():
    assert run(Kind.MOVED, readonly=True, on_replica=True).keep_reads_off


def test_ask_resends_once_with_asking_and_leaves_the_map_alone():
    a = run(Kind.ASK)
    assert (a.do, a.node, a.asking, a.repoint) == (Do.REDIRECT, "n:2", True, False)


@pytest.mark.parametrize("kind", [Kind.TRYAGAIN, Kind.CLUSTERDOWN])
def test_tryagain_and_clusterdown_back_off_by_hop(kind):
    a = run(kind, Budget(hops=2))
    assert a.do is Do.BACKOFF and a.delay == pytest.approx(0.3) and a.budget.hops == 3


def test_only_clusterdown_asks_for_a_new_map():
    assert run(Kind.CLUSTERDOWN).refresh and not run(Kind.TRYAGAIN).refresh


def test_loading_keeps_reads_off_and_reroutes_a_keyed_read_at_once():
    a = run(Kind.LOADING, readonly=True)
    assert a.do is Do.BACKOFF and a.delay == 0 and a.keep_reads_off


@pytest.mark.parametrize("readonly,keyed", [(False, True), (True, False), (False, False)])
def test_loading_backs_off_when_nothing_else_can_serve(readonly, keyed):
    assert run(Kind.LOADING, readonly=readonly, keyed=keyed).delay > 0


@pytest.mark.parametrize("kind", REDIRECT_KINDS)
def test_every_redirection_counts_a_hop_and_the_last_one_raises(kind):
    a = run(kind, Budget(max_redirections=3, hops=2))
    assert a.do is Do.RAISE and a.give is Give.TOO_MANY_REDIRECTIONS


def test_the_last_hop_still_reports_what_the_reply_says_about_the_cluster():
    last = Budget(max_redirections=1)
    assert run(Kind.MOVED, last).repoint
    assert run(Kind.CLUSTERDOWN, last).refresh
    assert run(Kind.LOADING, last).keep_reads_off


@pytest.mark.parametrize("kind,readonly,sent", list(itertools.product(REDIRECT_KINDS, [True, False], [True, False])))
def test_redirections_never_touch_the_failure_budget_or_the_breaker(kind, readonly, sent):
    a = run(kind, readonly=readonly, sent=sent)
    assert a.budget.failures == 0 and not a.mark_failed and a.give is None


# ---------------------------------------------------------------- connection failures


@pytest.mark.parametrize("kind", FAILURE_KINDS)
def test_an_unsent_command_waits_for_a_new_map_within_the_budget(kind):
    a = run(kind, Budget(failures=1))
    assert a.do is Do.WAIT_FOR_MAP and a.mark_failed and a.delay == pytest.approx(0.2)
    assert a.budget.failures == 2


@pytest.mark.parametrize("kind,readonly,retry_unknown", list(itertools.product(FAILURE_KINDS, [True, False], [True, False])))
def test_a_sent_command_is_retried_only_if_it_cannot_write_or_the_user_opted_in(kind, readonly, retry_unknown):
    a = run(kind, sent=True, readonly=readonly, retry_unknown=retry_unknown)
    if readonly or retry_unknown:
        assert a.do is Do.WAIT_FOR_MAP
    else:
        assert a.do is Do.RAISE and a.give is Give.UNKNOWN_OUTCOME
    assert a.mark_failed


@pytest.mark.parametrize("readonly", [True, False])
def test_a_spent_count_budget_reraises(readonly):
    a = run(Kind.CONNECTION, Budget(retries=2, failures=2), readonly=readonly)
    assert a.do is Do.RAISE and a.give is Give.SPENT and a.mark_failed


def test_a_deadline_replaces_the_count():
    many = Budget(retries=1, failures=50, deadline=NOW + 1)
    assert run(Kind.CONNECTION, many).do is Do.WAIT_FOR_MAP
    late = Budget(retries=100, failures=1, deadline=NOW)
    assert run(Kind.CONNECTION, late).give is Give.DEADLINE


# ---------------------------------------------------------------- stale pooled connections


@pytest.mark.parametrize("asking", [True, False])
def test_a_closed_pooled_connection_is_retried_at_once_without_counting_against_the_node(asking):
    a = run(Kind.CONNECTION, fresh=False, asking=asking)
    assert (a.do, a.node, a.asking) == (Do.RETRY_FRESH, "n:1", asking)
    assert a.drop_idle and not a.mark_failed and a.budget.failures == 0 and a.budget.stale_retried


def test_only_one_stale_retry_per_command():
    a = run(Kind.CONNECTION, Budget(stale_retried=True), fresh=False)
    assert a.do is Do.WAIT_FOR_MAP and a.mark_failed


def test_a_timeout_on_a_pooled_connection_is_a_real_failure():
    assert run(Kind.TIMEOUT, fresh=False).mark_failed


def test_a_write_sent_on_a_closed_pooled_connection_has_an_unknown_outcome():
    a = run(Kind.CONNECTION, fresh=False, sent=True)
    assert a.give is Give.UNKNOWN_OUTCOME and a.drop_idle and not a.mark_failed


# ---------------------------------------------------------------- open breaker


def test_an_open_breaker_waits_for_a_map_that_routes_elsewhere():
    a = run(Kind.BREAKER_OPEN)
    assert a.do is Do.WAIT_FOR_MAP and a.refresh and not a.mark_failed and a.budget.failures == 1


def test_an_open_breaker_with_the_budget_spent_is_unavailable():
    a = run(Kind.BREAKER_OPEN, Budget(retries=0))
    assert a.do is Do.RAISE and a.give is Give.UNAVAILABLE


# ---------------------------------------------------------------- values


def test_budgets_are_values_never_changed_in_place():
    b = Budget()
    run(Kind.CONNECTION, b)
    run(Kind.MOVED, b)
    assert b == Budget()


@pytest.mark.parametrize(
    "kind,readonly,sent,fresh,spent",
    list(itertools.product(list(Kind), [True, False], [True, False], [True, False], [True, False])),
)
def test_every_combination_gives_a_consistent_action(kind, readonly, sent, fresh, spent):
    budget = Budget(retries=0, max_redirections=1) if spent else Budget()
    a = run(kind, budget, readonly=readonly, sent=sent, fresh=fresh)
    assert (a.do is Do.RAISE) == (a.give is not None)
    if a.do in (Do.REDIRECT, Do.RETRY_FRESH):
        assert a.node
    if a.give is Give.UNKNOWN_OUTCOME:
        assert sent and not readonly
    if not spent and kind in REDIRECT_KINDS:
        assert a.do is not Do.RAISE


# ---------------------------------------------------------------- exceptions into Failures (failure_of)


def test_failure_of_loading_is_a_reply_even_though_redis_py_calls_it_a_connection_error():
    e = rx.BusyLoadingError("Redis is loading the dataset in memory")
    assert failure_of(e, "n:1", sent=False, fresh=False) == Failure(Kind.LOADING, "n:1", sent=True)
    assert answered(e)


@pytest.mark.parametrize("error, kind", [
    (ConnectionRefusedError(), Kind.CONNECTION),
    (rx.ConnectionError("reset"), Kind.CONNECTION),
    (rx.TimeoutError("timed out"), Kind.TIMEOUT),
    (TimeoutError(), Kind.TIMEOUT),
])
def test_failure_of_a_connection_failure_keeps_how_far_the_attempt_got(error, kind):
    assert failure_of(error, "n:1", sent=True, fresh=False) == Failure(kind, "n:1", sent=True, fresh=False)
    assert not answered(error)


def test_failure_of_an_asyncio_connection_error_uses_what_it_carries():
    lost = LostConnectionError("closed", node="n:1", sent=True, reused=True)
    assert failure_of(lost, "n:1", sent=False) == Failure(Kind.CONNECTION, "n:1", sent=True, fresh=False)
    late = CommandTimeoutError(0.5, node="n:1", sent=True)
    assert failure_of(late, "n:1", sent=False) == Failure(Kind.TIMEOUT, "n:1", sent=True, fresh=True)


def test_failure_of_a_pool_closed_under_the_attempt_sends_it_where_the_newest_map_says():
    f = failure_of(errors.PoolClosedError("connections to n:1 are closed"), "n:1", sent=True, fresh=False)
    assert f == Failure(Kind.CONNECTION, "n:1", sent=False, fresh=True)


@pytest.mark.parametrize("error", [
    errors.PoolTimeoutError("no connection free"),
    asyncio.CancelledError(),
    KeyboardInterrupt(),
    ValueError("a bug"),
])
def test_failure_of_what_is_not_the_nodes_failure_is_none(error):
    assert failure_of(error, "n:1", sent=True) is None


# ---------------------------------------------------------------- the call's deadline


@pytest.mark.parametrize("kind", [*FAILURE_KINDS, Kind.BREAKER_OPEN])
def test_a_wait_for_a_new_map_never_runs_past_the_deadline(kind):
    a = run(kind, Budget(deadline=NOW + 0.05), readonly=True)
    assert a.do is Do.WAIT_FOR_MAP and a.delay == pytest.approx(0.05)


@pytest.mark.parametrize("kind", [Kind.TRYAGAIN, Kind.CLUSTERDOWN, Kind.UNSERVED, Kind.LOADING])
def test_a_backoff_that_reaches_the_deadline_gives_up_at_once(kind):
    # backoff(1) is 0.1 s: no try could follow it
    a = run(kind, Budget(deadline=NOW + 0.05))
    assert a.do is Do.RAISE and a.give is Give.DEADLINE
    assert a.refresh == (kind in (Kind.CLUSTERDOWN, Kind.UNSERVED))  # what the reply said still counts


def test_a_backoff_within_the_deadline_is_kept():
    a = run(Kind.TRYAGAIN, Budget(deadline=NOW + 5))
    assert a.do is Do.BACKOFF and a.delay == pytest.approx(0.1)


@pytest.mark.parametrize("kind", [*REDIRECT_KINDS, *FAILURE_KINDS, Kind.BREAKER_OPEN])
def test_every_kind_gives_up_with_deadline_once_it_passed(kind):
    a = run(kind, Budget(deadline=NOW), readonly=True)
    assert a.do is Do.RAISE and a.give is Give.DEADLINE


def test_a_write_that_may_have_run_says_so_even_at_the_deadline():
    a = run(Kind.TIMEOUT, Budget(deadline=NOW), sent=True)
    assert a.give is Give.UNKNOWN_OUTCOME


def test_budget_left_is_never_negative():
    assert Budget(deadline=NOW + 1).left(NOW) == pytest.approx(1)
    assert Budget(deadline=NOW).left(NOW + 3) == 0
    assert Budget().left(NOW) is None


# ---------------------------------------------------------------- a slot nobody serves


def test_hash_slot_not_served_is_its_own_kind():
    assert failure_of(rx.ClusterDownError("Hash slot not served"), "n:1", sent=True).kind is Kind.UNSERVED
    assert failure_of(rx.ClusterDownError("The cluster is down"), "n:1", sent=True).kind is Kind.CLUSTERDOWN


def test_unserved_answers_give_up_as_not_served_before_the_redirection_limit():
    b = Budget(unserved=MAX_UNSERVED - 1, hops=MAX_UNSERVED - 1)
    a = run(Kind.UNSERVED, b)
    assert a.do is Do.RAISE and a.give is Give.NOT_SERVED and a.refresh
    assert run(Kind.UNSERVED, Budget(unserved=MAX_UNSERVED - 2)).do is Do.BACKOFF


def test_cluster_down_answers_keep_the_redirection_limit():
    assert run(Kind.CLUSTERDOWN, Budget(hops=MAX_UNSERVED + 1)).do is Do.BACKOFF
