"""Small helpers for raw RESP replies and command arguments (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def text(v: Any) -> str:
    """A reply item as str (bytes decoded as UTF-8)."""
    return v.decode() if isinstance(v, bytes) else str(v)


def as_map(v: Any) -> dict[str, Any]:
    """A map reply as a dict with str keys: RESP3 gives dicts, RESP2 flat [k, v, k, v] lists."""
    if isinstance(v, dict):
        return {text(k): x for k, x in v.items()}
    it = iter(v)
    return {text(k): x for k, x in zip(it, it)}


def command_name(args: Sequence[Any]) -> str:
    """The command of an argument list, upper case, for messages ("GET", "CONFIG GET")."""
    return text(args[0]).upper()
