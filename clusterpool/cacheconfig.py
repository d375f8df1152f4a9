"""Client-side caching options: redis-py's `CacheConfig` (or `cache=`) read into `CacheSettings`.

`cache_config=redis.cache.CacheConfig(...)` works unchanged (its `max_size` is the entry
bound); `clusterpool.CacheConfig` is the same type with what a production cache needs on top:
a bound in bytes, an optional TTL, and commands to add to redis-py's allow-list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.cache import CacheConfig as RedisCacheConfig, CacheProxy, DefaultCache

from . import errors

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# redis-py 8.2 notes the server itself reports these as not cacheable (XREAD also blocks)
_NOT_CACHEABLE = frozenset({"XREAD", "XPENDING", "TS.INFO"})
DEFAULT_COMMANDS = frozenset(c.upper() for c in RedisCacheConfig.DEFAULT_ALLOW_LIST) - _NOT_CACHEABLE


class CacheConfig(RedisCacheConfig):
    """redis-py's CacheConfig plus `max_bytes` (default 64 MiB), `ttl` (seconds; None: entries
    live until invalidated or evicted) and `extra_commands` (read-only keyed commands to cache
    beyond redis-py's default allow-list)."""

    def __init__(self, max_size: int = RedisCacheConfig.DEFAULT_MAX_SIZE, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 ttl: float | None = None, extra_commands: Iterable[str] = (), **kwargs: Any) -> None:
        if isinstance(extra_commands, str):
            raise errors.ConfigurationError(f"extra_commands must be a list of command names, got {extra_commands!r}")
        super().__init__(max_size=max_size, **kwargs)
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.extra_commands = tuple(extra_commands)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """What the store and the drivers need: the bounds, the TTL and the cached command names."""

    max_entries: int
    max_bytes: int
    ttl: float | None
    commands: frozenset[str]  # upper-case names

    def caches(self, name: str) -> bool:
        return name.upper() in self.commands

    def caches_read(self, info: Any) -> bool:
        """Whether a command (its CommandInfo) is cached: allowed, read-only, one key at a fixed
        place, not blocking."""
        return (self.caches(info.name) and info.readonly and bool(info.single_key)
                and "blocking" not in info.flags)


def cache_settings(cache: Any, cache_config: Any) -> CacheSettings | None:
    """The settings `cache=` / `cache_config=` ask for (None: no cache); ConfigurationError for
    what clusterpool cannot honour, saying what to pass instead."""
    if cache is not None and cache_config is not None:
        raise errors.ConfigurationError("pass cache= or cache_config=, not both")
    if cache is not None:
        if type(cache) not in (DefaultCache, CacheProxy):
            raise errors.ConfigurationError(
                f"cache={cache!r}: clusterpool keeps its own store (indexed by slot and node for "
                "invalidation); pass cache_config=clusterpool.CacheConfig(...) instead of a custom cache object")
        cache_config = cache.config
    if cache_config is None:
        return None
    if not isinstance(cache_config, RedisCacheConfig):
        raise errors.ConfigurationError(
            f"cache_config={cache_config!r}: pass a redis.cache.CacheConfig or clusterpool.CacheConfig")
    mode = getattr(cache_config, "get_tracking_mode", None)
    if mode is not None and getattr(mode(), "value", "plain") != "plain":  # redis-py 8.2's TrackingMode
        raise errors.ConfigurationError(
            f"cache_config tracking_mode={mode()!r}: clusterpool tracks every cached read "
            "(plain mode); choose what is cached with extra_commands / the allow-list instead")
    max_entries = cache_config.get_max_size()
    max_bytes = getattr(cache_config, "max_bytes", DEFAULT_MAX_BYTES)
    ttl = getattr(cache_config, "ttl", None)
    extra = getattr(cache_config, "extra_commands", ())
    if not isinstance(max_entries, int) or max_entries < 1:
        raise errors.ConfigurationError(f"cache max_size must be an int >= 1, got {max_entries!r}")
    if not isinstance(max_bytes, int) or max_bytes < 1024:
        raise errors.ConfigurationError(f"cache max_bytes must be an int >= 1024, got {max_bytes!r}")
    if ttl is not None and (not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0):
        raise errors.ConfigurationError(f"cache ttl must be a number of seconds > 0 or None, got {ttl!r}")
    if isinstance(extra, str) or not all(isinstance(c, str) and c for c in extra):
        raise errors.ConfigurationError(f"cache extra_commands must be command names, got {extra!r}")
    return CacheSettings(max_entries, max_bytes, ttl, DEFAULT_COMMANDS | {c.upper() for c in extra})
