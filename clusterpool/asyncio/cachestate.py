"""What client-side caching adds to the asyncio client's shared state (mixed into ClusterState):
the store and the invalidation links, what a new map or a link coming up means for them, and
the hits' yield to the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from ..cachestore import CacheStore, slots_reassigned
from ..config import Config, backoff_of
from ..topology import Topology
from .cachelinks import InvalidationLinks
from .settings import NodeSettings

HITS_PER_YIELD = 64  # cache hits do no I/O: one in this many yields to the loop (hit_served)


class CachingMixin:
    """The cache side of ClusterState; `cache` and `links` stay None without `cache_config=`."""

    cache: CacheStore | None
    links: InvalidationLinks | None
    nodes: dict[str, Any]
    topology: Topology | None
    _closed: bool

    def _settings(self, name: str, readonly: bool) -> NodeSettings:
        raise NotImplementedError

    def retire_grace(self) -> float:
        raise NotImplementedError

    def _start_cache(self, config: Config) -> None:
        self.cache = None
        self.links = None
        self._hits_run = 0  # hits served since the last yield to the loop
        settings = config.cache
        if settings is None:
            return
        self.cache = CacheStore(settings.max_entries, settings.max_bytes, settings.ttl)
        self.links = InvalidationLinks(self.cache, lambda name: self._settings(name, False), self._in_map,
                                       lambda n: float(backoff_of(config.retry).compute(n)),
                                       config.health_interval, self._link_up)

    async def hit_served(self) -> None:
        """A read was served from the cache (no I/O, so no chance for the loop to run): every
        HITS_PER_YIELD-th one yields to the loop, so a task that only hits (a loop polling a key)
        neither starves the others nor keeps the invalidation links from being read."""
        self._hits_run += 1
        if self._hits_run >= HITS_PER_YIELD:
            self._hits_run = 0
            await asyncio.sleep(0)

    def _in_map(self, name: str) -> bool:
        t = self.topology
        return t is not None and name in t.by_name and not self._closed

    def _link_up(self, name: str) -> None:
        """Node `name`'s invalidation link came up anew: its connections set up for an older one
        serve no cached read any more."""
        st = self.nodes.get(name)
        if st is not None and self.links is not None:
            st.pool.retire_shared(self.links.keeps(name), self.retire_grace())

    def _cache_follows(self, old: Topology | None, new: Topology, gone: Iterable[str]) -> None:
        """What a new map means for the cache: entries of slots served elsewhere now, and of
        nodes that left, are dropped; nodes still in the map keep their links."""
        cache, links = self.cache, self.links
        if cache is None or links is None:
            return
        moved = slots_reassigned(old, new)
        if moved:
            cache.flush_slots(moved)
        for name in gone:
            links.forget(name)
        for name in self.nodes:
            if name in new.by_name:
                links.watch(name)
