"""The asyncio client's invalidation links: one task per node it has connections to.

How this works (the tracking design is invalidation.py's): a task opens a RESP2 connection
of its own to the node (the client's address, TLS and credentials), asks `CLIENT ID`,
subscribes to `__redis__:invalidate` and marks the link up in the `LinkBook`; data
connections opened from then on redirect their tracking to that id. It then reads forever:
named keys are invalidated in the store, a flush message drops everything read from the
node. A link quiet for `ping_every` seconds is sent a PING; quiet for another period, it
counts as broken. When it breaks (EOF, error, silence), the node's link is marked down and
everything cached from the node is dropped, in that order and with no await in between, so
no hit is served from an entry whose invalidation may be lost; then it reconnects with
backoff while the node is in the map. `forget()` (the node left the map) drops its entries
and stops the task; `aclose()` cancels and awaits every task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from redis import exceptions as rx

from ..cachestore import CacheStore, FlushReason
from ..invalidation import CHANNEL, FLUSH, Link, LinkBook, invalidated, refused_warning
from .settings import NodeSettings, close_connection, open_connection

log = logging.getLogger("clusterpool.asyncio")


class LinkSilentError(rx.ConnectionError):
    """The link answered neither a message nor a PING for two ping periods."""


def link_settings(settings: NodeSettings) -> NodeSettings:
    """A data connection's settings made into an invalidation link's: RESP2 (pub/sub messages),
    replies undecoded, never READONLY."""
    kw = {**settings.options, "protocol": 2, "decode_responses": False}
    kw.pop("client_name", None)
    return replace(settings, readonly=False, kwargs=tuple(sorted(kw.items())))


class InvalidationLinks:
    """Every node's invalidation link and the task that keeps it (see the module docstring)."""

    def __init__(self, store: CacheStore, settings_of: Callable[[str], NodeSettings],
                 in_map: Callable[[str], bool], backoff: Callable[[int], float], ping_every: float,
                 on_up: Callable[[str], None]) -> None:
        self.book = LinkBook()
        self.store = store
        self._settings_of = settings_of
        self._in_map = in_map
        self._backoff = backoff
        self._ping_every = ping_every
        self._on_up = on_up
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tried: dict[str, asyncio.Event] = {}  # set once a node's link was first tried
        self._ending: set[asyncio.Task[None]] = set()
        self._refused: set[str] = set()  # nodes whose link the server refused (warned once)
        self._closed = False

    # ---- what the data connections ask ---------------------------------------------------

    def watch(self, name: str) -> None:
        """Keep a link to node `name` (no-op when its task runs)."""
        task = self._tasks.get(name)
        if self._closed or (task is not None and not task.done()):
            return
        self._tried.setdefault(name, asyncio.Event())
        self._tasks[name] = asyncio.get_running_loop().create_task(self._keep(name), name=f"cache-link {name}")

    async def tracking(self, name: str) -> Link | None:
        """The link a new data connection to `name` redirects to (None: untracked); waits for the
        first try of the node's link, so the first connections are tracked from the start."""
        tried = self._tried.get(name)
        if tried is not None and not tried.is_set():
            await tried.wait()
        return self.book.redirect_for(name)

    def stale(self, name: str, seen: int) -> bool:
        """Whether a connection opened while link generation `seen` was current (0: none) is set
        up for an older link than the node's live one (it then serves no cached read)."""
        link = self.book.redirect_for(name)
        return link is not None and seen < link.gen

    def keeps(self, name: str) -> Callable[[Any], bool]:
        """Which of node `name`'s shared connections stay in use for cached reads."""
        return lambda mux: not self.stale(name, mux.seen)

    # ---- lifecycle -----------------------------------------------------------------------

    def forget(self, name: str) -> None:
        """Node `name` left the map: drop its entries now, stop its link."""
        self.book.forget(name)
        self.store.flush_node(name, FlushReason.NODE_GONE)
        self._tried.pop(name, None)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

    async def aclose(self) -> None:
        """Cancel every link task and wait for it (each closes its socket)."""
        self._closed = True
        tasks = [*self._tasks.values(), *self._ending]
        self._tasks = {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- one node's link -----------------------------------------------------------------

    async def _keep(self, name: str) -> None:
        failures = 0
        while True:
            before = self.book.links.get(name)
            try:
                await self._serve(name)
            except asyncio.CancelledError:
                raise
            except rx.ResponseError as e:  # refused: an ACL without CLIENT ID or this channel
                if name not in self._refused:
                    self._refused.add(name)
                    log.warning("%s", refused_warning(name, e))
            except Exception as e:  # noqa: BLE001 - any other failure: reconnect after a backoff
                log.debug("invalidation link to %s failed: %s", name, e)
            finally:
                tried = self._tried.get(name)
                if tried is not None:
                    tried.set()
            after = self.book.links.get(name)
            came_up = after is not None and (before is None or after.gen != before.gen)
            failures = 1 if came_up else failures + 1  # a link that was up backs off from the start
            if not self._in_map(name):
                return
            await asyncio.sleep(self._backoff(failures))

    async def _serve(self, name: str) -> None:
        settings = link_settings(self._settings_of(name))
        conn = await open_connection(settings)
        try:
            async with asyncio.timeout(settings.socket_connect_timeout):
                await conn.send_packed_command(conn.pack_commands([("CLIENT", "ID"), ("SUBSCRIBE", CHANNEL)]),
                                               check_health=False)
                client_id = await conn.read_response()
                await conn.read_response()  # the subscription's confirmation
            if not isinstance(client_id, int):
                raise rx.ResponseError(f"CLIENT ID answered {client_id!r}")
            self.book.up(name, client_id)
            tried = self._tried.get(name)
            if tried is not None:
                tried.set()
            self._on_up(name)
            await self._listen(conn, name)
        finally:
            # first: no entry of this node is served once its invalidations may be lost
            if self.book.down(name):
                self.store.flush_node(name, FlushReason.LINK_BROKEN)
            await close_connection(conn)

    async def _listen(self, conn: Any, name: str) -> None:
        store = self.store
        quiet = False
        while True:
            message = await conn.read_response(timeout=self._ping_every, disconnect_on_error=False)
            if message is None:  # nothing for a period: a PING proves the link is alive
                if quiet:
                    raise LinkSilentError(f"invalidation link to {name} went silent")
                await conn.send_command("PING", check_health=False)
                quiet = True
                continue
            quiet = False
            keys = invalidated(message)
            if keys is FLUSH:
                store.flush_node(name, FlushReason.SERVER_FLUSH)
            elif keys:
                store.invalidate(keys)
