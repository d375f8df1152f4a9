"""Wire details of the shared connection: packing a command, refusing the ones a shared
connection cannot carry, and reaching redis-py's hiredis reader (mux.py uses them)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import Connection

from .._redispy import NOT_ENOUGH_DATA, hiredis_reader
from ..commands import CONNECTION_STATE
from ..errors import ConfigurationError

__all__ = ["NOT_ENOUGH_DATA", "PUSH", "hiredis_of", "hiredis_pack", "pack", "refuse_stateful"]

try:
    from hiredis import pack_command as hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency
    hiredis_pack = None  # type: ignore[assignment]
PUSH: Any = None  # hiredis' type of RESP3 out-of-band pushes
try:
    from hiredis import PushNotification

    PUSH = PushNotification
except ImportError:  # pragma: no cover - hiredis < 3.2
    pass


def pack(conn: Connection, args: Sequence[Any]) -> bytes:
    """One command's wire form, with hiredis' packer when it can (redis-py's otherwise).

    redis-py's rule that a first argument with spaces ("CLUSTER INFO") is several words
    is kept; anything hiredis refuses goes through redis-py, which raises DataError.
    """
    if not args:
        raise ValueError("a command needs at least a name")
    if hiredis_pack is not None and conn.encoder.encoding.lower() in ("utf-8", "utf8"):
        head = args[0]
        if (" " in head) if type(head) is str else (type(head) is bytes and b" " in head):
            args = (*head.split(), *args[1:])
        try:
            return bytes(hiredis_pack(tuple(args)))
        except TypeError:
            pass
    return b"".join(conn.pack_command(*args))


# Commands that would change what the shared connection's later replies mean.
_REFUSED = frozenset(n for n in CONNECTION_STATE if "|" not in n)
_REFUSED_SUB = frozenset({*(n for n in CONNECTION_STATE if "|" in n), "client|reply"})


def _word(arg: Any) -> str:
    return (arg.decode() if isinstance(arg, bytes | bytearray) else str(arg)).lower()


_PLAIN: set[Any] = set()  # first arguments seen to be harmless whatever follows (GET, b"SET", ...)


def refuse_stateful(args: Sequence[Any]) -> None:
    """Raise ConfigurationError for a command a shared connection cannot carry (MULTI, SUBSCRIBE, ...)."""
    head = args[0]
    try:
        if head in _PLAIN:
            return
    except TypeError:  # unhashable: looked at in full below
        pass
    words = _word(head).split()
    name = words[0] if words else ""
    bad = name in _REFUSED
    if not bad and name == "client":
        sub = words[1] if len(words) > 1 else _word(args[1]) if len(args) > 1 else ""
        bad = f"client|{sub}" in _REFUSED_SUB
        name = f"client {sub}"
    if not bad and words and words[0] != "client" and len(_PLAIN) < 1024 and type(head) in (str, bytes):
        _PLAIN.add(head)
    if bad:
        raise ConfigurationError(
            f"{name.upper()} changes connection state, which a shared connection cannot keep: "
            "use a dedicated connection (lease()); for ASK redirects use execute(..., asking=True)"
        )


def hiredis_of(conn: Connection) -> tuple[Any, asyncio.StreamReader, int] | None:
    """redis-py's hiredis reader, stream and read size of `conn` (read once, through the seam),
    or None when it parses in Python."""
    return hiredis_reader(conn)
