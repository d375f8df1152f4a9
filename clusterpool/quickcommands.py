"""redis-py command methods with a shortcut for their common call.

redis-py 8's `set()` runs an experimental-arguments decorator (it inspects
the call's arguments on every call) and two mutual-exclusion checks before
building `SET name value`: ~5 us a call, more than the rest of the client's
work for a pipelined SET. With no options the result is always
`execute_command("SET", name, value)`, so that call goes straight there;
any option takes redis-py's own method, checks and warnings included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.commands import CoreCommands


class QuickCommands:
    """Mixed in ahead of redis-py's CoreCommands by the client and the pipeline."""

    if TYPE_CHECKING:
        def execute_command(self, *args: Any, **options: Any) -> Any: ...

    if not TYPE_CHECKING:  # type checkers see redis-py's own set(): its keywords and overloads

        def set(self, name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            """redis-py's `set()`; see `CoreCommands.set`."""
            if args or kwargs:
                return CoreCommands.set(self, name, value, *args, **kwargs)
            return self.execute_command("SET", name, value)
