"""Errors of the asyncio connection layer: each one says whether the command reached the wire.

A driver turns them into `policy.Failure(kind, node, sent=...)`: `sent=False` means the
bytes were never handed to the socket (safe to resend anywhere), `sent=True` means they
were, so a write may have run.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any

from redis import exceptions as _rx

from ..errors import AttemptError


class LostConnectionError(AttemptError, _rx.ConnectionError):
    """The connection broke (or was closed) before this command's reply arrived."""

    def __init__(self, message: str, *, node: str, sent: bool, reused: bool = True) -> None:
        outcome = "sent, outcome unknown" if sent else "not sent"
        super().__init__(f"{message} ({node}; command {outcome})")
        self.node = node
        self.sent = sent
        self.reused = reused  # the connection had answered before: it may just be stale (policy's fresh=False)


class CommandTimeoutError(AttemptError, _rx.TimeoutError):
    """No reply within the command's timeout; the connection stays up and drops the late reply."""

    def __init__(self, timeout: float, *, node: str, sent: bool) -> None:
        outcome = "sent, outcome unknown" if sent else "not sent"
        super().__init__(f"no reply from {node} within {timeout}s (command {outcome})")
        self.node = node
        self.sent = sent


def is_error_reply(e: BaseException) -> bool:
    """Whether `e` is the server's error reply (the connection is still in step), not a socket failure.

    redis-py maps some replies to ConnectionError subclasses (LOADING -> BusyLoadingError,
    NOAUTH / WRONGPASS -> AuthenticationError); its parser marks every mapped reply with
    `status_code`, which socket errors never have.
    """
    return isinstance(e, _rx.ResponseError) or (isinstance(e, _rx.RedisError) and e.status_code is not None)


# The message of the CancelledError a shared connection raises for a caller cancelled before its
# command was written (it never will be: the write skips abandoned commands), so that a cut at
# the deadline can say "not sent" and a write ends as the deadline's error, not an unknown outcome.
NOT_SENT = "clusterpool: cancelled before the write"


async def by_deadline(reply: Awaitable[Any], deadline: float, node: str, *, sent: bool = True) -> Any:
    """`await reply`, cancelled at `deadline` (loop time: monotonic) as CommandTimeoutError.

    Cancelling is safe where it is used: a shared connection's caller abandons its reply slot
    (the connection drops the late reply, never hands it to another caller), and a dedicated
    lease cancelled mid-command is discarded on release. `sent`: what the error says; where
    the caller cannot tell whether the command was written, it counts as sent (a write then
    ends as an unknown outcome); a shared connection tells, by cancelling with NOT_SENT."""
    loop = asyncio.get_running_loop()
    start, timer = loop.time(), asyncio.timeout_at(deadline)
    if start >= deadline and inspect.iscoroutine(reply):  # too late to start: nothing is written
        reply.close()
        raise CommandTimeoutError(0.0, node=node, sent=False)
    try:
        async with timer:
            return await reply
    except TimeoutError as e:
        if not timer.expired():
            raise
        unsent = isinstance(e.__cause__, asyncio.CancelledError) and e.__cause__.args == (NOT_SENT,)
        raise CommandTimeoutError(round(loop.time() - start, 3), node=node, sent=sent and not unsent) from None
