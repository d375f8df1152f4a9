"""The sync client's invalidation links: one connection and one thread per node we cache reads from.

Each link runs `CLIENT ID`, subscribes (RESP2) to `__redis__:invalidate` and reads until it
breaks; the data connections to that node redirect their tracking to it (invalidation.py
says why). A link is also pinged when quiet, so a node that stops answering counts as a
broken link. Whenever a link goes down, everything cached from its node is dropped before
anything else happens, and the link is made again while the node is in the map.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from redis import exceptions as rx

from .cachestore import CacheStore, FlushReason
from .invalidation import CHANNEL, FLUSH, LinkBook, invalidated, refused_warning

log = logging.getLogger("clusterpool.cache")

PING_AFTER = 1.0  # seconds of silence before the link is pinged; another such wait without any reply breaks it
_BACKOFF_FIRST, _BACKOFF_CAP = 0.05, 1.0


class InvalidationLinks:
    """Starts a node's link on its first cacheable read (`want`) and keeps it up until the node
    leaves the map (`drop`) or the client closes."""

    def __init__(self, store: CacheStore, book: LinkBook, connect: Callable[[str], Any],
                 in_map: Callable[[str], bool]) -> None:
        self.store, self.book = store, book
        self._connect = connect  # node -> a new, unconnected redis-py Connection (RESP2, no decoding)
        self._in_map = in_map
        self._threads: dict[str, threading.Thread] = {}
        self._conns: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._dropped: set[str] = set()
        self._refused: set[str] = set()  # nodes whose link the server refused (warned once)

    def want(self, node: str) -> None:
        """Make sure `node` has a link (started in the background; reads are cached once it is up)."""
        if node in self._threads or self._stop.is_set():
            return
        with self._lock:
            if node in self._threads or self._stop.is_set():
                return
            self._dropped.discard(node)
            t = threading.Thread(target=self._keep, args=(node,), name=f"clusterpool-invalidate-{node}", daemon=True)
            self._threads[node] = t
            t.start()

    def drop(self, node: str) -> None:
        """The node left the map: close its link and forget what came from it."""
        with self._lock:
            t = self._threads.pop(node, None)
            self._dropped.add(node)
            conn = self._conns.get(node)
        if conn is not None:
            _disconnect(conn)
        if self.book.down(node) or t is not None:
            self.store.flush_node(node, FlushReason.NODE_GONE)
        self.book.forget(node)

    def client_ids(self) -> dict[str, int]:
        """Each up link's server-side client id (what CLIENT KILL ID would take)."""
        return {n: link.client_id for n, link in self.book.links.items() if link.client_id is not None}

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            threads, self._threads = dict(self._threads), {}
            conns = list(self._conns.values())
        for conn in conns:
            _disconnect(conn)
        for t in threads.values():
            t.join(PING_AFTER * 2 + 1)

    # ---------------------------------------------------------------- the link thread

    def _wanted(self, node: str) -> bool:
        return not self._stop.is_set() and node not in self._dropped and self._in_map(node)

    def _keep(self, node: str) -> None:
        delay = _BACKOFF_FIRST
        try:
            while self._wanted(node):
                conn = self._connect(node)
                with self._lock:
                    self._conns[node] = conn
                try:
                    self._serve(node, conn)
                    delay = _BACKOFF_FIRST
                except rx.ResponseError as e:  # refused: an ACL without CLIENT ID or this channel
                    if node not in self._refused:
                        self._refused.add(node)
                        log.warning("%s", refused_warning(node, e))
                except (rx.RedisError, OSError, ValueError) as e:
                    log.debug("invalidation link to %s broke: %s", node, e)
                except Exception as e:  # noqa: BLE001 - a close() racing a read; else a bug, logged
                    if self._wanted(node):
                        log.warning("invalidation link to %s failed: %r", node, e, exc_info=True)
                finally:
                    if self.book.down(node):
                        self.store.flush_node(node, FlushReason.LINK_BROKEN)
                    with self._lock:
                        self._conns.pop(node, None)
                    _disconnect(conn)
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, _BACKOFF_CAP)
        finally:
            with self._lock:
                if self._threads.get(node) is threading.current_thread():
                    del self._threads[node]

    def _serve(self, node: str, conn: Any) -> None:
        """Open the link, announce it up, then apply what it says until it breaks."""
        conn.connect()
        conn.send_command("CLIENT", "ID")
        client_id = int(conn.read_response())
        conn.send_command("SUBSCRIBE", CHANNEL)
        conn.read_response()
        if not self._wanted(node):
            return
        self.book.up(node, client_id)
        pinged = False
        while not self._stop.is_set():
            if not conn.can_read(timeout=PING_AFTER):
                if pinged:
                    raise rx.TimeoutError(f"invalidation link to {node} silent for {2 * PING_AFTER:.0f} s")
                conn.send_command("PING")
                pinged = True
                continue
            pinged = False
            keys = invalidated(conn.read_response())
            if keys is FLUSH:
                self.store.flush_node(node, FlushReason.SERVER_FLUSH)
            elif keys:
                self.store.invalidate(keys)


def _disconnect(conn: Any) -> None:
    try:
        conn.disconnect()
    except (rx.RedisError, OSError) as e:
        log.debug("closing an invalidation link: %s", e)
