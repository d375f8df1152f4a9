"""The observer hook: what a client tells a tracer about the commands it runs (a protocol only).

How this works: a client's shared state (the sync `Core`, the asyncio `ClusterState`)
holds `observer`, None unless something (clusterpool.otel) was installed with
`client.set_observer(...)`. With None the command path pays one `is None` check. With an
observer, each command and each pipeline/transaction `execute()` opens a `Scope` that the
observer keeps as the current one in its context; the drivers then report, on their
failure paths only, every policy action (`failure`: MOVED, ASK, retry ...) and every node
they go on to (`used`). Nothing here imports OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .policy import Action, Failure


class Scope(Protocol):
    """One observed operation; `end` is called exactly once."""

    def end(self, error: BaseException | None) -> None: ...


class Observer(Protocol):
    """Told about operations by the sync and the asyncio drivers; must never raise into them."""

    def command(self, node: str, args: Sequence[Any]) -> Scope:
        """One command is starting on `node` (it covers all its redirections and retries)."""
        ...

    def batch(self, operation: str, commands: Sequence[Sequence[Any]]) -> Scope:
        """A pipeline ("PIPELINE") or transaction ("MULTI") of `commands` is starting."""
        ...

    def used(self, node: str) -> None:
        """The current operation goes on to `node` (after a failure, or one node of a batch)."""
        ...

    def failure(self, action: Action, failure: Failure, error: BaseException | None) -> None:
        """The current operation met `failure` and the policy decided `action`."""
        ...
