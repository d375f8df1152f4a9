"""Small helpers for raw RESP replies and command arguments (pure)."""

from __future__ import annotations
from ._redispy import EMPTY_RESPONSE, NEVER_DECODE

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


def parse_reply(cache: dict[Any, Any], callbacks: Any, head: Any, response: Any, options: dict[str, Any]) -> Any:
    """`response` through redis-py's callback for command `head` (looked up once per name in
    `cache`); the parse may consume `options`. Both clients' reply parsing."""
    cb = callback_for(cache, callbacks, head)
    if cb is None:
        return response
    if options:
        options.pop("keys", None)
        options.pop(EMPTY_RESPONSE, None)
        options.pop(NEVER_DECODE, None)
    return cb(response, **options)


def callback_for(cache: dict[Any, Any], callbacks: Any, head: Any) -> Any:
    """redis-py's callback for command `head` (None: none), looked up once per name in `cache`."""
    cb = cache.get(head, _MISSING)
    if cb is _MISSING:
        cb = callbacks.get(str(head).upper() if not isinstance(head, bytes) else head.decode().upper())
        if len(cache) < 4096:
            cache[head] = cb
    return cb


_MISSING = object()
