"""clusterpool.discovery.startup_failure: what a failed startup node means, for both clients."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from clusterpool import errors
from clusterpool.startup import STARTUP_ERRORS, startup_failure


def test_an_unreachable_node_is_listed_with_its_error():
    assert startup_failure("10.0.0.1:7000", rx.ConnectionError("refused")) == "10.0.0.1:7000: refused"


def test_a_node_speaking_another_protocol_is_named_as_such():
    line = startup_failure("10.0.0.1:80", rx.InvalidResponse("bad reply"))
    assert line == "10.0.0.1:80: does not speak the Redis protocol (bad reply); is it a Redis port?"


def test_bad_credentials_stop_discovery_and_say_what_to_check():
    with pytest.raises(rx.AuthenticationError, match=r"authentication to 10.0.0.1:7000 failed: .*check username/password"):
        startup_failure("10.0.0.1:7000", rx.AuthenticationError("WRONGPASS"))


def test_a_node_that_is_not_a_cluster_stops_discovery():
    e = errors.NotAClusterError("cluster support disabled")
    with pytest.raises(errors.NotAClusterError) as info:
        startup_failure("10.0.0.1:7000", e)
    assert info.value is e


def test_every_error_it_sorts_is_caught_by_the_drivers():
    for e in (rx.AuthenticationError(), errors.NotAClusterError(), rx.TimeoutError(), OSError(), rx.InvalidResponse()):
        assert isinstance(e, STARTUP_ERRORS)
