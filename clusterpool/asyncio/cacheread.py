"""Cached reads for the asyncio client: a hit answers without I/O; a miss is read through `_run`
(redirects and retries as any command) and stored only if nothing invalidated it in flight.

How this works: which reads are cached and under which key is cacheplan's. A miss takes a
`Ticket` before the command is written, is sent on a shared connection `_run` picks itself
(`Carrier`: the node that answered and the invalidation link its connection's tracking
redirects to), and its raw reply is stored only if the ticket is still valid and that link is
still the node's live one. A single-key write through this client invalidates its key locally
when it completes, so the plain client reads its own writes even before the server's
invalidation message has been read off the link.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..cacheplan import cache_key, cached_key, is_mget, mget_keys
from ..cachestore import MISS, CacheStats, CacheStore, FlushReason
from ..commands import CommandInfo
from ..slots import encode_key
from ..topology import Topology
from .placement import PlacementMixin
from .router import Carrier


class CacheReadMixin(PlacementMixin):
    """`_through_cache` and `_written`, for execute_command; `cache_flush()` and `cache_stats()`."""

    async def _through_cache(self, topo: Topology, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """An allow-listed command: a hit, or a miss read and maybe stored (MISS: not cacheable
        after all, `execute_command` runs it as any other)."""
        store = self._state.cache
        assert store is not None
        if options and "target_nodes" in options:
            return MISS
        replica = not self._to_primary
        if is_mget(args[0]):
            return await self._cached_mget(store, topo, args, options, replica)
        ckey = cache_key(args, options, replica)
        if ckey is None:
            return MISS
        now = time.monotonic() if store.ttl else 0.0
        value = store.get(ckey, now)
        if value is not MISS:
            return self._parse(args[0], value, options)
        hit = self._single(topo, args, options)
        if hit is None:
            table = self._state.table
            if table is None or args[0] in table.resolved:
                return MISS
            table.resolve(args)  # the name's first use: learnt here, so this read is cached too
            hit = self._single(topo, args, options)
            if hit is None:
                return MISS
        info, slot, node = hit
        settings = self.config.cache
        assert settings is not None
        rkey = cached_key(settings, info, args)
        if rkey is None:
            return MISS
        return await self._miss(store, info, slot, node, args, options, [ckey], [rkey], None)

    async def _cached_mget(self, store: CacheStore, topo: Topology, args: tuple[Any, ...],
                           options: dict[str, Any], replica: bool) -> Any:
        """MGET from `("GET", key)` entries when every key hits; else sent whole, each value
        stored as its key's GET entry."""
        settings = self.config.cache
        assert settings is not None
        planned = mget_keys(settings, args, options, replica)
        if planned is None:
            return MISS
        ckeys, rkeys, slot = planned
        now = time.monotonic() if store.ttl else 0.0
        values = []
        for ckey in ckeys:
            value = store.get(ckey, now)
            if value is MISS:
                break
            values.append(value)
        else:
            return self._parse(args[0], values, options)
        table = self._state.table
        assert table is not None
        info = table.resolve(args)[0]
        return await self._miss(store, info, slot, None, args, options, ckeys, rkeys, len(rkeys))

    async def _miss(self, store: CacheStore, info: CommandInfo, slot: int, node: Any, args: Sequence[Any],
                    options: dict[str, Any], ckeys: list[Any], rkeys: list[bytes], many: int | None) -> Any:
        """Read through `_run` with a ticket taken before the write; store the raw reply (a list
        of `many` per-key replies for MGET) if the ticket and the carrying connection allow it."""
        deadline = None if self.config.retry_timeout is None else self.deadline()
        if node is None:
            topo = self._state.topology
            assert topo is not None
            node = await self._pick(topo, slot, info.readonly, deadline)
        links = self._state.links
        assert links is not None
        via = Carrier()
        ticket = store.begin(tuple(rkeys))
        try:
            result = await self._run(node.name, info, slot, args, options, deadline=deadline, via=via)
        except BaseException:
            store.abandon(ticket)
            raise
        raw = via.reply
        if raw is MISS or (many is not None and not (type(raw) is list and len(raw) == many)):
            store.abandon(ticket)
            return result
        items = [(ckeys[0], rkeys[0], raw)] if many is None else list(zip(ckeys, rkeys, raw))
        now = time.monotonic() if store.ttl else 0.0
        store.finish(ticket, items, slot, via.node, now, links.book.tracked(via.node, via.gen))
        return result

    def _written(self, key: Any) -> None:
        """A single-key write through this client ended (or failed): its key is invalidated here,
        so a read that follows never meets the entry it replaced."""
        store = self._state.cache
        if store is not None:
            try:
                store.invalidate((encode_key(key),))
            except TypeError:
                pass

    # ---- public ---------------------------------------------------------------------------

    def cache_flush(self) -> int:
        """Drop every cached entry now (counted as a USER flush); how many were dropped (0 when
        the client has no cache)."""
        store = self._state.cache
        return 0 if store is None else store.flush_all(FlushReason.USER)

    def cache_stats(self) -> CacheStats | None:
        """The cache's counters and contents (None: the client has no cache); also `stats().cache`."""
        store = self._state.cache
        return None if store is None else store.stats()
