"""Invalidation links, as values (I/O-free): which node's link is up under which client id, whether
a connection's tracking still points at a live link, and what a link's message says.

Tracking mode, both clients: every data connection to a node runs
`CLIENT TRACKING ON REDIRECT <id>`, where `<id>` is that node's invalidation link, a
connection of its own subscribed (RESP2) to `__redis__:invalidate`. This works alike on RESP2
and RESP3 data connections, on Redis 7.0 and Valkey 8, and with idle pooled connections (the
sync pools), whose own pushes would sit unread. The sync client reads its links on one thread,
the asyncio client on one task per link.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

CHANNEL = b"__redis__:invalidate"
FLUSH: Any = object()  # what `invalidated` returns when the server invalidates every key


@dataclass(frozen=True, slots=True)
class Link:
    """A node's invalidation link: `client_id` None while it is down. `gen` changes every time it
    comes up, so a connection set up for an older link is known not to be tracked."""

    client_id: int | None
    gen: int


class LinkBook:
    """Every node's link; replaced whole on change, so the command path reads it without a lock."""

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self._lock = threading.Lock()
        self._gen = 0

    def up(self, node: str, client_id: int) -> Link:
        """The node's link is connected and subscribed as `client_id`."""
        with self._lock:
            self._gen += 1
            link = Link(client_id, self._gen)
            self.links = {**self.links, node: link}
            return link

    def down(self, node: str) -> bool:
        """The node's link broke (or is being closed); True when it was up."""
        with self._lock:
            old = self.links.get(node)
            if old is None or old.client_id is None:
                return False
            self.links = {**self.links, node: Link(None, old.gen)}
            return True

    def forget(self, node: str) -> None:
        with self._lock:
            if node in self.links:
                links = dict(self.links)
                del links[node]
                self.links = links

    def redirect_for(self, node: str) -> Link | None:
        """The link a new data connection to `node` should redirect to (None: no tracking now)."""
        link = self.links.get(node)
        return link if link is not None and link.client_id is not None else None

    def tracked(self, node: str, gen: int | None) -> bool:
        """Whether a connection set up for link generation `gen` is tracked by a live link now."""
        link = self.links.get(node)
        return gen is not None and link is not None and link.client_id is not None and link.gen == gen


def refused_warning(node: str, error: BaseException) -> str:
    """What both drivers log (once per node) when the server refuses a node's invalidation link."""
    return (f"no client-side caching of reads from {node}: its invalidation link was refused ({error}); "
            "the ACL user needs +client|id, +subscribe and &__redis__:invalidate")


def tracking_command(client_id: int) -> tuple[Any, ...]:
    return ("CLIENT", "TRACKING", "ON", "REDIRECT", client_id)


def invalidated(message: Any) -> Any:
    """The keys an invalidation message names (a list of bytes), FLUSH for "every key", or None
    for any other message (subscribe confirmations, PING replies)."""
    if not isinstance(message, list | tuple) or len(message) != 3:
        return None
    kind, channel, keys = message
    if kind not in (b"message", "message") or channel not in (CHANNEL, CHANNEL.decode()):
        return None
    if keys is None:
        return FLUSH
    if isinstance(keys, bytes | str):
        keys = [keys]
    return [k if isinstance(k, bytes) else str(k).encode() for k in keys]
