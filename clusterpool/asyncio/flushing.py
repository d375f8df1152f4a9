"""When the shared connections of one event loop write their queued commands: the flush rule,
with public asyncio API only (so it behaves the same on asyncio's own loop and on uvloop).

How this works: a connection whose write queue stops being empty marks itself here, and ONE
callback (`call_soon`) flushes every marked connection. A callback runs after every callback
scheduled before it, so two moments are chosen to schedule it:

  * the first mark while none is scheduled: the flush runs in the next loop iteration, and
    every command queued until then, by any task to any node, shares its connection's write;
  * the reply that leaves no reply awaited on this loop's shared connections: the callers it
    and the replies before it woke up are already scheduled, so they all run, and queue their
    next commands, before this flush, in this very iteration. A lone caller's next command
    thus goes out without waiting a loop iteration, and a whole wave of callers shares one write.

`awaited` counts the replies awaited on this loop's shared connections (their reply FIFOs). It
only chooses when to flush: every mark has a flush scheduled after it, whatever the count says.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

__all__ = ["Flusher", "flusher_of"]


class _Flushable(Protocol):
    def flush(self) -> None: ...


class Flusher:
    """The flush rule of one event loop's shared connections (see the module docstring)."""

    __slots__ = ("__weakref__", "_loop", "_marked", "_scheduled", "awaited")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # a strong one would keep the loop's entry in _FLUSHERS for ever
        self._marked: list[_Flushable] = []
        self._scheduled = 0  # flush callbacks scheduled and not yet run
        self.awaited = 0  # replies awaited on this loop's shared connections

    def mark(self, conn: _Flushable) -> None:
        """`conn` has commands queued: flush it with the next flush callback."""
        self._marked.append(conn)
        if not self._scheduled:
            self._schedule()

    def sent(self, replies: int) -> None:
        """A write added `replies` replies to await."""
        self.awaited += replies

    def answered(self, replies: int = 1) -> None:
        """Replies arrived (or were given up with their connection); when none is left
        awaited, flush after the callers they woke up."""
        self.awaited -= replies
        if not self.awaited:
            self._schedule()

    def _schedule(self) -> None:
        loop = self._loop()
        if loop is not None:
            self._scheduled += 1
            loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled -= 1
        marked, self._marked = self._marked, []
        for conn in marked:
            conn.flush()


_FLUSHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flusher] = weakref.WeakKeyDictionary()


def flusher_of(loop: asyncio.AbstractEventLoop) -> Flusher:
    """The flush rule shared by every shared connection of `loop` (made on first use)."""
    flusher = _FLUSHERS.get(loop)
    if flusher is None:
        flusher = _FLUSHERS[loop] = Flusher(loop)
    return flusher
