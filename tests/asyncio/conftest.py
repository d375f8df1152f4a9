"""Fixtures of the asyncio tests: the session cluster is left as these tests found it."""

from __future__ import annotations

import pytest

from async_helpers import drop_test_keys


@pytest.fixture(autouse=True)
def _clean_keys(request):
    yield
    if "cluster" in request.fixturenames:  # the session cluster: leave it as we found it
        drop_test_keys(request.getfixturevalue("cluster"))
