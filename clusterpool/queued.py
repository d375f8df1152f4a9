"""One queued command of a pipeline or transaction, and what became of it (mutable, per execute)."""

from __future__ import annotations

from typing import Any

from .commands import CommandInfo
from .policy import Budget

PENDING = object()  # the result of a command not run yet


class Queued:
    """A command's arguments, its slot and route once planned, its reply or error once run."""

    __slots__ = ("args", "options", "info", "slot", "result", "asking", "node", "target", "budget", "parts")

    def __init__(self, args: tuple[Any, ...], options: dict[str, Any]) -> None:
        self.args, self.options = args, options
        self.info: CommandInfo | None = None
        self.slot: int | None = None
        self.result: Any = PENDING
        self.asking = False
        self.node = ""
        self.target = ""  # send to this node in the next round only (target_nodes=, MOVED), then by slot
        self.budget: Budget | None = None  # made on the command's first failure only
        self.parts: list[Queued] | None = None  # a command split per slot: its per-slot commands
