"""Which reads the client-side cache serves, and under which cache key (I/O-free; both clients).

A cached read is a command on the allow-list (`CacheSettings.caches`), read-only in the
command table, with one key at a fixed place, outside pipelines and transactions. Its cache
key is the arguments as given, so `GET k` and `GET k` share an entry and any other spelling
is simply another entry. MGET is served per key from `("GET", key)` entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._redispy import NEVER_DECODE
from .cacheconfig import CacheSettings
from .commands import CommandInfo
from .slots import encode_key, key_slot

# markers heading a cache key: a reply read undecoded, a reply read from a replica (the plain
# client, which reads its writes, never serves a replica's entry)
RAW = ("\x00raw",)
REPLICA = ("\x00replica",)
_GET = "GET"


def cache_key(args: tuple[Any, ...], options: dict[str, Any], replica: bool) -> Any:
    """The cache key of a read (None when an argument is unhashable: not cached)."""
    key = args
    if options and NEVER_DECODE in options:
        key = RAW + key
    if replica:
        key = REPLICA + key
    try:
        hash(key)
    except TypeError:
        return None
    return key


def cached_key(settings: CacheSettings, info: CommandInfo, args: Sequence[Any]) -> bytes | None:
    """The Redis key (encoded) of a read the cache may serve; None for any other command."""
    idx = info.single_key
    if not (idx and info.readonly and len(args) > idx and settings.caches(info.name)):
        return None
    try:
        return encode_key(args[idx])
    except TypeError:
        return None


def mget_keys(settings: CacheSettings, args: Sequence[Any], options: dict[str, Any],
              replica: bool) -> tuple[list[Any], list[bytes], int] | None:
    """An MGET the cache may serve per key: its `("GET", key)` cache keys, encoded keys and slot
    (None when MGET is not cached, has no key, or spans slots: the server's error is the answer)."""
    if len(args) < 2 or not settings.caches("MGET") or not settings.caches(_GET):
        return None
    try:
        rkeys = [encode_key(k) for k in args[1:]]
    except TypeError:
        return None
    ckeys = [cache_key((_GET, k), options, replica) for k in args[1:]]
    if None in ckeys:
        return None
    slot = key_slot(rkeys[0])
    if any(key_slot(k) != slot for k in rkeys[1:]):
        return None
    return ckeys, rkeys, slot


def is_mget(head: Any) -> bool:
    return type(head) is str and head.upper() == "MGET" or type(head) is bytes and head.upper() == b"MGET"
