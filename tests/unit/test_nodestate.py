"""clusterpool.nodestate.NodeState: circuit breaker and latency health."""

from __future__ import annotations

import time

import pytest

from clusterpool.nodestate import Health, NodeState
from clusterpool.pool import ConnectionPool


def state(**kw):
    return NodeState("h:1", ConnectionPool("h:1", lambda: None), **kw)


def test_new_state_is_healthy_and_available():
    st = state()
    assert st.health is Health.HEALTHY
    assert st.available()


def test_failures_below_threshold_degrade_but_keep_available():
    st = state(failure_threshold=3, cooldown=3600)
    assert st.record_failure() is Health.DEGRADED
    assert st.record_failure() is None  # already degraded: no change
    assert st.available()
    assert st.failures == 2


def test_breaker_opens_at_failure_threshold():
    st = state(failure_threshold=3, cooldown=3600)
    st.record_failure()
    st.record_failure()
    assert st.record_failure() is Health.UNHEALTHY
    assert st.health is Health.UNHEALTHY
    assert not st.available()


def test_breaker_stays_open_during_cooldown():
    st = state(failure_threshold=1, cooldown=3600)
    st.record_failure()
    assert not st.available()
    assert not st.available(time.monotonic() + 3599)


def test_breaker_available_after_cooldown_passes():
    st = state(failure_threshold=1, cooldown=3600)
    st.record_failure()
    assert st.available(time.monotonic() + 3601)


def test_breaker_with_zero_cooldown_is_available_at_once():
    st = state(failure_threshold=1, cooldown=0)
    assert st.record_failure() is Health.UNHEALTHY
    assert st.available()


def test_record_success_closes_breaker():
    st = state(failure_threshold=2, cooldown=3600)
    st.record_failure()
    st.record_failure()
    assert st.record_success() is Health.HEALTHY
    assert st.available()
    assert st.failures == 0
    assert st.health is Health.HEALTHY


def test_record_success_resets_failure_count():
    st = state(failure_threshold=3, cooldown=3600)
    st.record_failure()
    st.record_failure()
    st.record_success()
    st.record_failure()
    st.record_failure()
    assert st.available()


def test_record_success_when_healthy_reports_no_change():
    assert state().record_success() is None


def test_first_latency_sample_is_taken_as_is():
    st = state()
    st.record_latency(0.004)
    assert st.latency == pytest.approx(0.004)


def test_latency_is_ewma():
    st = state()
    st.record_latency(0.010)
    st.record_latency(0.020)
    assert st.latency == pytest.approx(0.7 * 0.010 + 0.3 * 0.020)
    st.record_latency(0.0)
    assert st.latency == pytest.approx(0.7 * (0.7 * 0.010 + 0.3 * 0.020))


def test_slow_latency_degrades():
    st = state(slow_threshold=0.05)
    assert st.record_latency(0.2) is Health.DEGRADED
    assert st.health is Health.DEGRADED


def test_latency_at_threshold_is_healthy():
    st = state(slow_threshold=0.05)
    assert st.record_latency(0.05) is None
    assert st.health is Health.HEALTHY


def test_latency_recovering_below_threshold_heals():
    st = state(slow_threshold=0.05)
    st.record_latency(0.1)
    health = None
    for _ in range(20):
        health = st.record_latency(0.001) or health
    assert health is Health.HEALTHY
    assert st.health is Health.HEALTHY


def test_latency_sample_does_not_close_open_breaker():
    st = state(failure_threshold=1, cooldown=3600)
    st.record_failure()
    assert st.record_latency(0.001) is None
    assert st.health is Health.UNHEALTHY
    assert not st.available()


def test_record_success_after_slow_latency_stays_degraded():
    st = state(slow_threshold=0.05)
    st.record_latency(0.5)
    st.record_success()
    assert st.health is Health.DEGRADED
