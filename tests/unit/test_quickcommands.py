"""clusterpool.quickcommands: the shortcut for a plain SET sends what redis-py's set() sends."""

from __future__ import annotations

import pytest
from redis.commands import CoreCommands
from redis.exceptions import DataError

from clusterpool.quickcommands import QuickCommands


class Recorder(CoreCommands):
    def execute_command(self, *args, **options):
        return args, options


class Quick(QuickCommands, Recorder):
    pass


@pytest.mark.parametrize("call", [
    lambda c: c.set("k", "v"),
    lambda c: c.set(b"k", 1),
    lambda c: c.set("k", "v", ex=5),
    lambda c: c.set("k", "v", 5),
    lambda c: c.set("k", "v", nx=True, get=True),
    lambda c: c.set("k", "v", keepttl=True, xx=True),
    lambda c: c.set(name="k", value="v"),
])
def test_set_sends_what_redis_py_sends(call):
    assert call(Quick()) == call(Recorder())


def test_set_keeps_redis_py_checks():
    with pytest.raises(DataError):
        Quick().set("k", "v", ex=1, px=1)
