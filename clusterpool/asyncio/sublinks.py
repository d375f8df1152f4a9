"""The connections of one asyncio pubsub: a `Link` per node, the subscriptions waiting for a node, the inbox.

How this works: a `Link` is a connection leased from its node's dedicated pool
(dedicated.py) for the pubsub's lifetime, with the subscriptions made on it and one
reader task. The reader keeps the link's bookkeeping at once (unsubscribe confirmations,
a server-sent `sunsubscribe`, MOVED for an SSUBSCRIBE, a broken socket) and puts what the
caller should see into the `Inbox`, so a cancelled reader of the inbox loses nothing.
Subscriptions a link can no longer hold are "lost" (orphaned) and `on_orphan()` is
called; resubscribe.py moves them. Where a subscription goes is subscriptions.py's
decision, shared with the sync client. A closed link's connection is closed and
discarded (never reused) in a task `aclose()` waits for.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx

from .._redispy import Encoder, str_if_bytes
from .. import errors
from .. import subscriptions as rules
from ..policy import Budget, Failure, Kind, decide, failure_kind
from ..slots import slot_of
from .dedicated import Dedicated, DedicatedPool
from .errors import is_error_reply
from .inbox import Inbox
from .settings import close_connection

if TYPE_CHECKING:
    from .state import ClusterState

CONN_ERRORS = (rx.ConnectionError, rx.TimeoutError, OSError)
# subscriptions are retried until they are closed: a budget that is never spent
FOREVER = Budget(max_redirections=2**31, retries=2**31)
KINDS = (rules.CHANNEL, rules.PATTERN, rules.SHARD)


class Link:
    """One leased dedicated connection to one node and what is subscribed on it (keys normalised)."""

    def __init__(self, name: str, sharded: bool, pool: DedicatedPool, conn: Dedicated) -> None:
        self.name = name
        self.sharded = sharded
        self.pool = pool
        self.conn = conn
        self.subs: dict[str, dict[Any, Any]] = {k: {} for k in KINDS}
        self.pending: dict[str, set[Any]] = {k: set() for k in KINDS}  # unsubscribes not confirmed yet
        self.awaited = rules.AwaitedSunsubscribes()  # SUNSUBSCRIBEs sent, not confirmed yet
        self.reader: asyncio.Task[None] | None = None
        self.closed = False

    def held(self, kind: str) -> dict[Any, Any]:
        """Subscriptions of `kind` not being unsubscribed."""
        pending = self.pending[kind]
        return {k: v for k, v in self.subs[kind].items() if k not in pending}

    def idle(self) -> bool:
        """Nothing subscribed and no unsubscribe confirmation still to come."""
        return not any(self.subs.values()) and not any(self.pending.values())


class Links:
    """Every link of one pubsub and the subscriptions waiting for one (see the module docstring)."""

    def __init__(self, state: ClusterState, encoder: Encoder, backoff: Callable[[int], float]) -> None:
        self.state = state
        self.encoder = encoder
        self.backoff = backoff
        self.classic: Link | None = None
        self.shard: dict[str, Link] = {}  # owner node name -> its link
        self.lost: dict[str, dict[Any, Any]] = {k: {} for k in KINDS}
        self.lost_classic_node = ""  # the classic link's node when it was lost (tried again)
        self.classic_key: Any = None  # the first channel or pattern: its slot's owner holds the classic link
        self.pinned = ""  # node= / host=, port= of pubsub(): classic subscriptions go there
        self.inbox: Inbox[Link] = Inbox()
        self.on_orphan: Callable[[], None] = lambda: None
        # the pubsub these links serve: kept alive by the reader tasks while anything is subscribed,
        # so the client's aclose() (which holds pubsubs weakly) still finds and closes it
        self.served: object = None
        self.closed = False
        self._tasks: set[asyncio.Task[Any]] = set()  # readers and closers
        self._open: set[Link] = set()  # every link not closed yet (aclose() closes them all)

    # ---- state -----------------------------------------------------------------------

    def all(self) -> list[Link]:
        return [*self.shard.values(), *([self.classic] if self.classic is not None else [])]

    def subs(self, kind: str) -> dict[Any, Any]:
        """Subscriptions of `kind`, on a node or waiting for one."""
        out = dict(self.lost[kind])
        for link in self.all():
            out.update(link.subs[kind])
        return out

    def orphans(self) -> bool:
        return any(self.lost.values())

    def pending(self, kind: str) -> set[Any]:
        """Subscriptions of `kind` whose unsubscribe is sent but not confirmed yet."""
        return {name for link in self.all() for name in link.pending[kind]}

    @property
    def subscribed(self) -> bool:
        return self.orphans() or any(any(link.subs.values()) for link in self.all())

    def norm(self, name: Any) -> Any:
        """A name as the server's replies spell it (bytes, or str with decode_responses)."""
        return self.encoder.decode(self.encoder.encode(name))

    def forget(self, kind: str, names: Sequence[Any] | None) -> None:
        """Waiting subscriptions not to make after all (None: every one of `kind`)."""
        self.lost[kind] = rules.forget(self.lost[kind], names, self.norm)

    # ---- where subscriptions go ------------------------------------------------------

    async def owner(self, key: Any, avoid: str = "") -> str:
        """The primary serving `key`'s slot now, unless it is `avoid` ("" when unknown)."""
        if key is None:
            return ""
        name = rules.shard_owner(await self.state.ensure(), key)
        return name if name != avoid else ""

    async def classic_link(self, key: Any, avoid: str = "") -> Link:
        """The classic link, opened where subscriptions.classic_node says if there is none."""
        if self.classic is not None:
            return self.classic
        topo = await self.state.ensure()
        rules.check_pinned(topo, self.pinned)
        if key is not None and self.classic_key is None:
            self.classic_key = key
        key_owner = "" if self.pinned and self.pinned != avoid else await self.owner(self.classic_key, avoid)
        primaries = [p for p in topo.primaries if p.usable and p.name != avoid] or list(topo.primaries)
        down = self.state.node_states.down
        live = [p.name for p in primaries if p.name not in down] or [p.name for p in primaries]
        name = rules.classic_node(self.pinned, avoid, key_owner, live, random.choice)
        if not name:
            raise errors.SlotNotCoveredError("the cluster's map has no primary to subscribe on")
        self.classic = await self.open(name, sharded=False)
        return self.classic

    async def ssubscribe_slot(self, group: Mapping[Any, Any]) -> None:
        """SSUBSCRIBE channels of one slot on its owner, one at a time (SlotNotCoveredError when
        the map has none); on a broken connection they are not subscribed and the error is raised."""
        first = next(iter(group))
        owner = await self.owner(first)
        if not owner:
            await self.refresh()
            owner = await self.owner(first)
            if not owner:
                raise errors.SlotNotCoveredError(f"slot {slot_of(first)} is not served by any primary in the map")
        link = self.shard.get(owner)
        if link is None or link.closed:
            link = self.shard[owner] = await self.open(owner, sharded=True)
        normed = {self.norm(k): v for k, v in group.items()}
        link.subs[rules.SHARD].update(normed)  # before sending: the reader may see the confirmation first
        link.pending[rules.SHARD].difference_update(normed)
        try:
            for ch in group:
                await self.send(link, "SSUBSCRIBE", ch)
        except CONN_ERRORS:
            self.forget(rules.SHARD, list(group))
            raise

    async def refresh(self) -> None:
        """A new map now; a failed refresh keeps the current one (the attempts that follow decide)."""
        try:
            await self.state.refresh_now()
        except errors.PoolClosedError:
            raise
        except Exception:  # noqa: BLE001
            pass

    # ---- links -----------------------------------------------------------------------

    async def open(self, name: str, sharded: bool) -> Link:
        """A new link to node `name`: a dedicated connection and its reader task."""
        pool = self.state.state(name).pool.dedicated
        try:
            conn = await pool.acquire()
        except CONN_ERRORS as e:
            self.note(Failure(failure_kind(e), name), e)
            raise
        link = Link(name, sharded, pool, conn)
        self._open.add(link)
        if self.closed:
            self.close(link)
            raise errors.PoolClosedError("this pubsub is closed")
        link.reader = self._spawn(self._read(link))
        return link

    async def send(self, link: Link, *args: Any) -> None:
        """Write one command on `link`; if that fails or is cancelled, the link is lost
        (a write cut short leaves the stream unusable) and the error raised."""
        try:
            await link.conn.send(*args)
        except CONN_ERRORS as e:
            self.lose(link, e)
            raise
        except BaseException:
            self.lose(link, None)
            raise

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def close(self, link: Link) -> None:
        """Stop reading `link` and close its connection (in a task `aclose()` waits for)."""
        if link.closed:
            return
        link.closed = True
        self._open.discard(link)
        if self.shard.get(link.name) is link:
            del self.shard[link.name]
        if self.classic is link:
            self.classic = None
        reader = link.reader
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        self._spawn(self._dispose(link, reader))

    async def _dispose(self, link: Link, reader: asyncio.Task[None] | None) -> None:
        if reader is not None and reader is not asyncio.current_task():
            await asyncio.gather(reader, return_exceptions=True)
        link.conn.broken = True  # a subscribed connection is never reused
        try:
            await close_connection(link.conn.connection)
        finally:
            link.pool.release(link.conn)

    def lose(self, link: Link, error: BaseException | None) -> None:
        """The link is gone: what it held waits to be resubscribed where it belongs now."""
        if link.closed:
            return
        for kind in KINDS:
            self.lost[kind].update(link.held(kind))
        if not link.sharded:
            self.lost_classic_node = link.name
        self.close(link)
        if error is not None:
            self.note(Failure(failure_kind(error), link.name, sent=True), error)
        self.on_orphan()

    def orphan_shard(self, link: Link, channels: Sequence[Any]) -> None:
        """These shard channels left `link`'s node: they wait to be resubscribed elsewhere."""
        held = link.subs[rules.SHARD]
        for ch in channels:
            if ch in held:
                self.lost[rules.SHARD][ch] = held.pop(ch)
        if link.idle():
            self.close(link)
        self.on_orphan()

    def move_shards(self) -> None:
        """Orphan the shard channels whose slot another primary serves in the current map."""
        topo = self.state.topology
        held = {name: list(link.held(rules.SHARD)) for name, link in self.shard.items()}
        for name, moved in rules.moved_shard_channels(held, lambda ch: rules.shard_owner(topo, ch)).items():
            self.orphan_shard(self.shard[name], moved)

    def note(self, failure: Failure, error: BaseException) -> None:
        """What a broken or redirected subscription tells the client about the cluster, as the policy says."""
        state = self.state
        if state.closed:
            return
        action = decide(failure, FOREVER, now=time.monotonic(), backoff=self.backoff, readonly=True)
        if action.mark_failed:
            state.node_failed(failure.node, error)
        if action.repoint and isinstance(error, rx.MovedError):
            state.on_moved(error.slot_id, error.host, error.port)
        if action.refresh or action.repoint:
            state.request_refresh()

    # ---- reading ---------------------------------------------------------------------

    async def _read(self, link: Link) -> None:
        """The link's reader: bookkeeping at once, everything else to the inbox."""
        conn = link.conn.connection
        try:
            while not link.closed:
                await self.inbox.room(link)
                try:
                    response = await conn.read_response(timeout=math.inf, disconnect_on_error=False,
                                                        push_request=True)
                except rx.RedisError as e:
                    if not is_error_reply(e):
                        raise
                    if isinstance(e, rx.MovedError) and link.sharded:  # SSUBSCRIBE to a node that lost the slot
                        self.note(Failure(Kind.MOVED, link.name, sent=True, target=f"{e.host}:{e.port}"), e)
                        self.orphan_shard(link, [ch for ch in link.subs[rules.SHARD] if slot_of(ch) == e.slot_id])
                    else:
                        self.inbox.put(link, e)
                    continue
                self._received(link, response)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a broken connection: its subscriptions move
            self.lose(link, e)

    def _received(self, link: Link, response: Any) -> None:
        ch = link.awaited.server_unsubscribed(response)
        if ch is not None:  # the node lost the slot (migration, demotion): resubscribe elsewhere
            self.orphan_shard(link, [ch])
            return
        if isinstance(response, list) and response:
            kind = str_if_bytes(response[0])
            if kind in rules.UNSUBSCRIBE_MESSAGE_TYPES:
                which = rules.kind_of(kind)
                if response[1] in link.pending[which]:
                    link.pending[which].discard(response[1])
                    link.subs[which].pop(response[1], None)
            elif kind == "smessage" and response[1] not in link.subs[rules.SHARD]:
                return  # moved to another node already: the copy from there is the one delivered
        self.inbox.put(link, response)
        if link.sharded and link.idle():
            self.close(link)

    # ---- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every link and wait for their readers and closers; waiting subscriptions are dropped."""
        self.closed = True
        for link in list(self._open):
            self.close(link)
        self.lost = {k: {} for k in KINDS}
        self.inbox.wake()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
