"""An auto-pipelined connection to one node, shared by any number of tasks.

How this works: a caller's command is packed at once (bad arguments fail in the caller,
before anything is queued) and appended to a write queue with a fresh future. A flush
callback takes the whole queue, so every command issued before it runs leaves in ONE socket
write; it does not wait for earlier replies before writing more. When it runs is the loop's
flush rule (flushing.py: the next loop iteration, or this one once no reply is awaited any
more, so a lone caller's command leaves at once). Just before writing, the flush moves each
command (its unit) to the FIFO of reply slots. ONE reader task reads replies continuously
and resolves the FIFO head.

  * Cancelled or timed-out callers abandon their future. A command still queued is then
    dropped before the write; one already written keeps its FIFO slot, and its reply is
    read and thrown away when it arrives. The connection stays up, and no other caller
    can receive that reply because slots are matched by position, never reused.
  * ASKING + command are packed into one unit: one chunk of bytes with two FIFO slots
    (the ASKING reply is dropped), so nothing can come between them.
  * A pipeline's commands for this node can be one unit too (`submit_packed`): one FIFO
    slot per reply, all pointing at the unit, whose future gets the list of replies.
  * Replies are read from hiredis' reader directly: every reply already buffered is
    handed out before the next socket read.
  * Any read or write error (or a reply with no slot) breaks the connection: every
    future still pending fails with `LostConnectionError(sent=...)`: sent=True for slots
    already handed to the socket (the command may have run), sent=False for the queue.
    A broken connection never reconnects; the node's connection set replaces it.
  * Per-command timeouts fail the caller's future; the socket has none, so a slow reply
    costs its caller only. Commands with the settings' timeout carry a deadline and ONE
    timer per connection sweeps them: their deadlines rise along the queue and the FIFO,
    so the sweep stops at the first live command not yet due and re-arms for it. Any
    other timeout is a timer of its own.
  * A flush whose bytes the socket did not take (more than the transport's high-water
    mark buffered) starts a drain task; until it is done, commands wait in the queue.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .errors import NOT_SENT, CommandTimeoutError, LostConnectionError, is_error_reply
from .flushing import flusher_of
from .settings import DEFAULT, NodeSettings, close_connection, open_connection
from .._redispy import stream_writer
from .wire import NOT_ENOUGH_DATA, PUSH, hiredis_of, hiredis_pack, pack, refuse_stateful

__all__ = ["MuxConnection", "MuxStats", "State", "pack", "refuse_stateful"]

_ASKING = b"*1\r\n$6\r\nASKING\r\n"


class State(IntEnum):
    """A shared connection's life: OPEN until it breaks or is closed; never reopened."""

    OPEN = 1
    BROKEN = 2
    CLOSED = 3


@dataclass(frozen=True, slots=True)
class MuxStats:
    """Counters of one shared connection (a copy)."""

    writes: int  # socket writes (one per batch)
    commands: int  # commands written
    replies: int  # replies read
    dropped: int  # replies read for abandoned (cancelled / timed-out) callers
    skipped: int  # commands dropped before the write because their caller gave up
    pending: int  # queued + awaiting a reply


class _Unit:
    """One caller's command: its bytes, how many replies it produces, its future and deadline."""

    __slots__ = ("data", "deadline", "future", "replies", "results", "sent")

    def __init__(self, data: bytes, future: asyncio.Future[Any], replies: int, deadline: float,
                 results: list[Any] | None = None) -> None:
        self.data = data
        self.future = future
        self.replies = replies
        self.deadline = deadline  # loop time when the sweep fails it; inf: it has no sweep deadline
        self.results = results  # a batch's replies so far (its future gets the list); None: one command
        self.sent = False


def _expire(unit: _Unit, timeout: float, node: str) -> None:
    if not unit.future.done():
        unit.future.set_exception(CommandTimeoutError(timeout, node=node, sent=unit.sent))


class MuxConnection:
    """A shared, auto-pipelined connection to one node (see the module docstring)."""

    def __init__(self, conn: Connection, settings: NodeSettings) -> None:
        """Wrap an already connected redis-py connection; use `MuxConnection.open()`."""
        self.settings = settings
        self.name = settings.name
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self._timeout = settings.socket_timeout
        self._hiredis_utf8 = hiredis_pack is not None and conn.encoder.encoding.lower() in ("utf-8", "utf8")
        self._queue: list[_Unit] = []
        self._fifo: deque[_Unit | None] = deque()  # None: the ASKING of an ASKING + command unit
        # redis-py keeps its StreamWriter private; the flush writes to it without a coroutine
        self._stream: asyncio.StreamWriter = stream_writer(conn)
        self._high = self._stream.transport.get_write_buffer_limits()[1]
        self._flusher = flusher_of(self._loop)
        self._sweeper: asyncio.TimerHandle | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._state = State.OPEN
        self._error: BaseException | None = None
        self._writes = self._commands = self._replies = self._dropped = self._skipped = 0
        self._reader = asyncio.create_task(self._guard(self._read_loop()), name=f"mux-read {self.name}")
        self._teardown: asyncio.Task[None] | None = None
        # client-side caching: the invalidation link generation this connection's tracking
        # redirects to (None: untracked), and the one that was live when it opened (0: none)
        self.gen: int | None = None
        self.seen = 0

    @classmethod
    async def open(cls, settings: NodeSettings) -> MuxConnection:
        """Connect (handshake, READONLY for replicas) and start the reader and writer tasks."""
        return cls(await open_connection(settings), settings)

    # ---- state -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        """OPEN, BROKEN or CLOSED."""
        return self._state

    @property
    def usable(self) -> bool:
        """Whether new commands can be submitted."""
        return self._state is State.OPEN

    @property
    def finished(self) -> bool:
        """Broken or closed, and its tasks and socket are gone."""
        return self._teardown is not None and self._teardown.done()

    @property
    def pending(self) -> int:
        """Commands queued or awaiting their reply (abandoned ones included until read)."""
        return len(self._queue) + len(self._fifo)

    def stats(self) -> MuxStats:
        """A copy of the counters."""
        return MuxStats(self._writes, self._commands, self._replies, self._dropped, self._skipped, self.pending)

    def __repr__(self) -> str:
        return (
            f"<MuxConnection {self.name} {self._state.name}: {len(self._queue)} queued, "
            f"{len(self._fifo)} awaiting replies, {self._writes} writes>"
        )

    # ---- commands --------------------------------------------------------------------

    def submit(self, args: Sequence[Any], *, asking: bool = False,
               timeout: float | None = None) -> asyncio.Future[Any]:
        """Queue one command (ASKING first when `asking`) and return the future of its reply.

        For callers that issue many commands before awaiting any (pipelines): all of them
        leave in one write. The caller must await the future (or cancel it to abandon the
        command). `timeout` (DEFAULT: the settings' socket_timeout) fails it with
        CommandTimeoutError; None (the default here) waits for ever.
        """
        swept = timeout is DEFAULT or timeout == self._timeout
        unit = self._enqueue(args, asking, swept)
        if not swept and timeout is not None:
            timer = self._loop.call_later(timeout, _expire, unit, timeout, self.name)
            unit.future.add_done_callback(lambda _: timer.cancel())
        return unit.future

    @property
    def packs_directly(self) -> bool:
        """Whether `pack()` of a plain command (a tuple with a one-word str name that passes
        `refuse_stateful`) is exactly `hiredis.pack_command(args)`, so a caller may call that."""
        return self._hiredis_utf8

    def pack(self, args: Sequence[Any]) -> bytes:
        """One command's bytes for this connection; bad arguments and commands a shared
        connection cannot carry raise here (DataError, ConfigurationError), before any queueing."""
        if self._state is not State.OPEN:
            raise self._lost_error(sent=False)
        if not args:
            raise ValueError("a command needs at least a name")
        refuse_stateful(args)
        head = args[0]
        if self._hiredis_utf8 and type(head) is str and " " not in head:
            try:
                return hiredis_pack(args if type(args) is tuple else tuple(args))
            except TypeError:
                pass
        return pack(self._conn, args)

    def submit_packed(self, commands: list[bytes]) -> asyncio.Future[list[Any]]:
        """Queue commands packed by `pack()` as one unit, with the settings' timeout: ONE future
        for the list of their replies, in order, error replies in place as exception objects
        (a pipeline's share of this node without a future per command)."""
        if self._state is not State.OPEN:
            raise self._lost_error(sent=False)
        return self._queue_unit(b"".join(commands), len(commands), True, []).future

    def _enqueue(self, args: Sequence[Any], asking: bool, swept: bool) -> _Unit:
        data = self.pack(args)
        return self._queue_unit(_ASKING + data if asking else data, 2 if asking else 1, swept, None)

    def _queue_unit(self, data: bytes, replies: int, swept: bool, results: list[Any] | None) -> _Unit:
        loop = self._loop
        fut = loop.create_future()
        deadline = math.inf
        if swept and self._timeout is not None:
            deadline = loop.time() + self._timeout
            if self._sweeper is None:
                self._sweeper = loop.call_at(deadline, self._sweep)
        unit = _Unit(data, fut, replies, deadline, results)
        queue = self._queue
        queue.append(unit)
        # the first command since the last flush asks for one; while a drain task runs, it
        # flushes when the socket has taken the last write
        if len(queue) == 1 and self._drainer is None:
            self._flusher.mark(self)
        return unit

    async def execute(self, *args: Any, asking: bool = False, timeout: float | None = DEFAULT) -> Any:
        """Send one command and return its raw reply (redis-py's parser, no response callback).

        `timeout` (default: the settings' socket_timeout; None waits for ever) raises
        CommandTimeoutError; error replies raise redis-py's ResponseError family.
        """
        swept = timeout is DEFAULT or timeout == self._timeout
        unit = self._enqueue(args, asking, swept)
        fut = unit.future
        timer = None if swept or timeout is None else self._loop.call_later(timeout, _expire, unit, timeout, self.name)
        try:
            return await fut
        except asyncio.CancelledError as e:
            if not unit.sent and not e.args:  # never written now: say so (errors.NOT_SENT)
                raise asyncio.CancelledError(NOT_SENT) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _sweep(self) -> None:
        """Fail the commands past their deadline; re-arm for the first one not yet due."""
        self._sweeper = None
        if self._state is not State.OPEN or self._timeout is None:
            return
        now = self._loop.time()
        for unit in itertools.chain(self._fifo, self._queue):
            if unit is None or unit.deadline == math.inf or unit.future.done():
                continue
            if unit.deadline > now:
                self._sweeper = self._loop.call_at(unit.deadline, self._sweep)
                return
            _expire(unit, self._timeout, self.name)

    # ---- writing and reading ---------------------------------------------------------

    def flush(self) -> None:
        """Write the whole queue in one write now (the loop's flush callback calls it); while a
        drain task waits for the socket, the drain task writes the queue when it is done."""
        if self._state is not State.OPEN or self._drainer is not None:
            return
        batch, self._queue = self._queue, []
        fifo = self._fifo
        awaited = len(fifo)
        chunks = []
        commands = 0
        for unit in batch:
            if unit.future.done():  # its caller gave up before the write
                self._skipped += 1
                continue
            unit.sent = True
            if unit.results is not None:  # a batch: one FIFO slot per reply, all the same unit
                fifo.extend(itertools.repeat(unit, unit.replies))
                commands += unit.replies
            else:
                if unit.replies == 2:
                    fifo.append(None)
                fifo.append(unit)
                commands += 1
            chunks.append(unit.data)
        if not chunks:
            return
        self._writes += 1
        self._commands += commands
        self._flusher.sent(len(fifo) - awaited)
        try:
            stream = self._stream
            stream.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            if stream.transport.get_write_buffer_size() > self._high:
                self._drainer = self._loop.create_task(self._guard(self._drain()), name=f"mux-drain {self.name}")
        except Exception as e:  # noqa: BLE001 - a failed write breaks the connection
            self._break(e, State.BROKEN)

    async def _drain(self) -> None:
        await self._stream.drain()
        self._drainer = None
        if self._queue:
            self.flush()

    async def _read_loop(self) -> None:
        direct = hiredis_of(self._conn)
        if direct is not None:
            return await self._read_hiredis(*direct)
        conn = self._conn
        while True:
            error: RedisError | None = None
            try:
                reply = await conn.read_response(timeout=math.inf, disconnect_on_error=False)
            except RedisError as e:
                if not is_error_reply(e):
                    raise
                reply, error = None, e
            self._resolve(reply, error)

    async def _read_hiredis(self, reader: Any, stream: asyncio.StreamReader, size: int) -> None:
        """The read loop on hiredis' reader itself: every reply already buffered is handed out
        before the next socket read, without redis-py's per-reply coroutines."""
        gets, feed, resolve = reader.gets, reader.feed, self._resolve
        while True:
            reply = gets()
            if reply is NOT_ENOUGH_DATA:
                data = await stream.read(size)
                if not data:
                    raise RedisConnectionError(f"connection closed by {self.name}")
                feed(data)
                continue
            if PUSH is not None and type(reply) is PUSH:
                continue  # an out-of-band push (RESP3), no command's reply
            if isinstance(reply, RedisError):  # hiredis hands error replies back as values
                if not is_error_reply(reply):
                    raise reply
                resolve(None, reply)
            elif type(reply) is list and reply and isinstance(reply[0], RedisConnectionError):
                raise reply[0]  # as redis-py's parser does
            else:
                resolve(reply, None)

    def _resolve(self, reply: Any, error: RedisError | None) -> None:
        """Hand one reply (or error reply) to the FIFO head, then tell the flush rule (after
        the caller is woken up, so a flush it schedules comes after the caller's next command)."""
        fifo = self._fifo
        if not fifo:
            raise LostConnectionError(f"reply with no pending command: {reply or error!r}", node=self.name, sent=True)
        unit = fifo.popleft()
        self._replies += 1
        if unit is None:  # the ASKING of an ASKING + command unit
            pass
        elif unit.future.done():
            self._dropped += 1
        elif unit.results is not None:
            results = unit.results
            results.append(reply if error is None else error)
            if len(results) == unit.replies:
                unit.future.set_result(results)
        elif error is not None:
            unit.future.set_exception(error)
        else:
            unit.future.set_result(reply)
        self._flusher.answered()

    async def _guard(self, loop: Any) -> None:
        try:
            await loop
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - any failure breaks the connection
            self._break(e, State.BROKEN)

    # ---- breaking and closing --------------------------------------------------------

    def _lost_error(self, *, sent: bool, cause: BaseException | None = None) -> LostConnectionError:
        cause = cause if cause is not None else self._error
        if self._state is State.CLOSED and cause is None:
            what = "connection closed"
        else:
            what = f"connection lost: {cause}" if cause is not None else "connection lost"
        return LostConnectionError(what, node=self.name, sent=sent, reused=self._replies > 0)

    def _break(self, error: BaseException | None, state: State) -> None:
        """Fail everything pending and start the teardown; only the first call counts."""
        if self._state is not State.OPEN:
            return
        self._state = state
        self._error = error
        fifo, self._fifo = self._fifo, deque()
        queue, self._queue = self._queue, []
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
        for sent in fifo:
            if sent is not None and not sent.future.done():
                sent.future.set_exception(self._lost_error(sent=True))
        for unit in queue:
            if not unit.future.done():
                unit.future.set_exception(self._lost_error(sent=False))
        if fifo:
            self._flusher.answered(len(fifo))
        self._teardown = asyncio.ensure_future(self._shutdown())

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in (self._reader, self._drainer) if t is not None]
        for task in tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_connection(self._conn)

    async def aclose(self) -> None:
        """Fail what is pending (LostConnectionError), stop both tasks and close the socket."""
        self._break(None, State.CLOSED)
        assert self._teardown is not None
        await asyncio.shield(self._teardown)
