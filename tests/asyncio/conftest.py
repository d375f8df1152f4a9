"""Fixtures of the asyncio tests: the session cluster is left as these tests found it.

`CLUSTERPOOL_TEST_LOOP=uvloop` runs every asyncio test on uvloop's event loop (pytest-asyncio's
loop-factory hook); unset or `asyncio`, they run on asyncio's own loop.
"""

from __future__ import annotations

import os

import pytest

from async_helpers import drop_test_keys

LOOP_ENV = "CLUSTERPOOL_TEST_LOOP"
_LOOP = os.environ.get(LOOP_ENV, "asyncio") or "asyncio"

if _LOOP == "uvloop":
    try:
        import uvloop
    except ImportError as e:  # pragma: no cover - the dev extra installs it
        raise pytest.UsageError(f"{LOOP_ENV}=uvloop needs uvloop installed (pip install -e '.[dev]')") from e
    from pytest_asyncio import plugin

    if not hasattr(getattr(plugin, "PytestAsyncioSpecs", None), "pytest_asyncio_loop_factories"):
        # an older pytest-asyncio would ignore the hook below and run the tests on asyncio's loop
        raise pytest.UsageError(f"{LOOP_ENV}=uvloop needs pytest-asyncio >= 1.4 (its loop-factory hook)")

    def pytest_asyncio_loop_factories(config, item):
        """Every asyncio test of this directory on a new uvloop loop."""
        return {"uvloop": uvloop.new_event_loop}

elif _LOOP != "asyncio":
    raise pytest.UsageError(f"{LOOP_ENV} must be 'asyncio' or 'uvloop', got {_LOOP!r}")


@pytest.fixture(autouse=True)
def _clean_keys(request):
    yield
    if "cluster" in request.fixturenames:  # the session cluster: leave it as we found it
        drop_test_keys(request.getfixturevalue("cluster"))
