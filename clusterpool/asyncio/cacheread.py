"""Cached reads for the asyncio client: a hit answers without I/O; a miss is read through `_run`
(redirects and retries as any command) and stored only if nothing invalidated it in flight.

How this works: what is cached, under which key, and when a reply may be stored are the
store's and the settings' (cachestore.cache_key, CacheSettings.caches_read, the store's
tickets), shared with the sync client. A miss takes its ticket before the command is written,
is sent on a shared connection `_run` picks itself (`Carrier`: the node that answered and the
invalidation link its connection's tracking redirects to), and its raw reply is stored only
if the ticket is still current and that link is still the node's live one. An MGET is served
per key from GET entries when all of them hit; otherwise it is sent whole and each key's
value is stored as its GET entry. A write through this client drops its keys' entries once
it is done (`forget_written`), so the client reads its own writes before the server's
invalidation message has been read off the link.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from .._redispy import NEVER_DECODE
from ..cachestore import MISS, CacheStore, FlushReason, Ticket, cache_key, forget_written, mget_read
from ..commands import CommandInfo
from ..slots import encode_key
from ..topology import Topology
from .pipeline import IN_PIPELINE
from .placement import PlacementMixin
from .router import Carrier

_GET = "GET"


class CacheReadMixin(PlacementMixin):
    """`_through_cache`, `forget_written` and `_written` for the command paths; `cache_flush()`."""

    _cache_ns: str | None  # views.py: cache_key's prefix (None when reads go to primaries only)

    async def _through_cache(self, topo: Topology, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        """A command on the allow-list: a hit, or a miss read and maybe stored (MISS: not
        cacheable after all, `execute_command` runs it as any other)."""
        store = self._state.cache
        assert store is not None
        if options and (NEVER_DECODE in options or "target_nodes" in options) or IN_PIPELINE.get():
            return MISS
        head = args[0]
        if head.upper() == "MGET":
            return await self._cached_mget(store, topo, args, options)
        ckey = cache_key(self._cache_ns, args)
        if ckey is None:
            return MISS
        value = store.get(ckey, time.monotonic() if store.ttl else 0.0)
        if value is not MISS:
            await self._state.hit_served()
            return self._parse(head, value, options)
        hit = self._single(topo, args, options)
        if hit is None:
            table = self._state.table
            if table is None or head in table.resolved:
                return MISS
            table.resolve(args)  # the name's first use: learnt here, so this read is cached too
            hit = self._single(topo, args, options)
            if hit is None:
                return MISS
        info, slot, node = hit
        settings = self.config.cache
        if settings is None or not settings.caches_read(info):
            return MISS
        ticket = store.begin(ckey, encode_key(args[info.single_key]), slot)
        return await self._miss(store, ticket, topo, info, slot, node, args, options, None)

    async def _cached_mget(self, store: CacheStore, topo: Topology, args: tuple[Any, ...],
                           options: dict[str, Any]) -> Any:
        settings = self.config.cache
        if len(args) < 2 or settings is None or not settings.caches(_GET):
            return MISS
        values, ticket = mget_read(store, self._cache_ns, args[1:], time.monotonic() if store.ttl else 0.0)
        if values is not None:
            await self._state.hit_served()
            return self._parse(args[0], values, options)
        table = self._state.table
        if ticket is None or table is None:
            return MISS
        info = table.resolve(args)[0]
        return await self._miss(store, ticket, topo, info, ticket[4], None, args, options,
                                list(zip(ticket[2], ticket[3])))

    async def _miss(self, store: CacheStore, ticket: Ticket, topo: Topology, info: CommandInfo, slot: int,
                    node: Any, args: Sequence[Any], options: dict[str, Any],
                    many: list[tuple[Any, bytes]] | None) -> Any:
        """Read through `_run` with `ticket` taken before the write; store the raw reply (for an
        MGET, each of its values as the GET entry of `many`'s keys) if the ticket and the
        carrying connection allow it."""
        deadline = None if self.config.retry_timeout is None else self.deadline()
        if node is None:
            node = await self._pick(topo, slot, info.readonly, deadline)
        via = Carrier()
        result = await self._run(node.name, info, slot, args, options, deadline=deadline, via=via)
        raw = via.reply
        links = self._state.links
        if raw is MISS or links is None:
            return result
        tracked = links.book.tracked(via.node, via.gen)
        now = time.monotonic() if store.ttl else 0.0
        if many is None:
            store.finish_one(ticket, via.node, raw, now, tracked)
        elif type(raw) is list and len(raw) == len(many):
            store.finish(ticket, [(c, r, v) for (c, r), v in zip(many, raw)], slot, via.node, now, tracked)
        return result

    def forget_written(self, commands: Iterable[Sequence[Any]]) -> None:
        """Commands this client sent (alone, in a pipeline or a transaction) are done or failed:
        those that may write drop their keys' entries (all of them for a keyless write such as
        FLUSHALL). Nothing to do without a cache."""
        store = self._state.cache
        if store is not None:
            for args in commands:
                forget_written(store, self._state.table, args)

    def _written(self, key: Any) -> None:
        """`forget_written` for a single-key write whose key is known (the hot path)."""
        store = self._state.cache
        if store is not None:
            store.invalidate((encode_key(key),))

    # ---- public ---------------------------------------------------------------------------

    def cache_flush(self) -> int:
        """Drop every cached entry now (counted as a USER flush); how many were dropped (0 when
        the client has no cache)."""
        store = self._state.cache
        return 0 if store is None else store.flush_all(FlushReason.USER)


