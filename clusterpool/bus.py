"""Delivers events to subscribers off the command path, in order, on one thread.

The same thread writes the log lines `eventlog.log_line` chooses for them, so logging
I/O never runs on a command's path or under a client's lock.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

from .eventlog import EventLog, log_line
from .events import EVENT_TYPES, Event

log = logging.getLogger("clusterpool.events")

Callback = Callable[[Event], object]
_STOP = object()


class EventBus:
    """`on(name, fn)` / `off(name, fn)`; `stream()` for an iterator. Exceptions in callbacks are logged."""

    def __init__(self) -> None:
        self._subs: dict[str, tuple[Callback, ...]] = {}
        self._streams: tuple[queue.Queue[Event], ...] = ()
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._log = EventLog()  # used on the delivery thread only

    def on(self, name: str, fn: Callback) -> Callback:
        if name != "*" and name not in EVENT_TYPES:
            raise ValueError(f"unknown event {name!r}: use one of {', '.join(EVENT_TYPES)} or '*'")
        if not callable(fn):
            raise TypeError("callback must be callable")
        with self._lock:
            self._subs[name] = self._subs.get(name, ()) + (fn,)
        return fn

    def off(self, name: str, fn: Callback) -> None:
        with self._lock:
            # ==, not `is`: `obj.method` is a new bound-method object on every access
            self._subs[name] = tuple(f for f in self._subs.get(name, ()) if f != fn)

    def stream(self, maxsize: int = 10000) -> EventStream:
        q: queue.Queue[Event] = queue.Queue(maxsize)
        with self._lock:
            self._streams += (q,)
        return EventStream(self, q)

    def drop_stream(self, q: queue.Queue[Event]) -> None:
        """Stop feeding one stream (what EventStream.close() asks for)."""
        with self._lock:
            self._streams = tuple(s for s in self._streams if s is not q)

    def publish(self, events: list[Event]) -> None:
        if self._closed or not events:
            return
        for s in self._streams:
            for e in events:
                try:
                    s.put_nowait(e)
                except queue.Full:
                    log.warning("event stream full; dropped %s", e.name)
        if not self._subs and not any(_loggable(e) for e in events):
            return
        for e in events:
            self._queue.put(e)
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._closed:
                    return
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="clusterpool-events", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            e = self._queue.get()
            if e is _STOP:
                return
            if isinstance(e, _Marker):
                e.done.set()
                continue
            assert isinstance(e, Event)
            line = self._log.line(e)
            if line is not None:
                logging.getLogger(line.logger).log(line.level, "%s", line.message)
            for fn in self._subs.get(e.name, ()) + self._subs.get("*", ()):
                try:
                    fn(e)
                except Exception:
                    log.exception("event callback %r failed on %s", fn, e.name)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event published so far was delivered (for tests and shutdown)."""
        done = threading.Event()
        if self._thread is None or not self._thread.is_alive():
            return True
        self._queue.put(_Marker(done))
        return done.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        self._closed = True
        t = self._thread
        if t is not None and t.is_alive():
            self._queue.put(_STOP)
            t.join(timeout)
        for s in self._streams:
            try:
                s.put_nowait(_STOP)  # type: ignore[arg-type]
            except queue.Full:
                pass


def _loggable(e: Event) -> bool:
    """Whether `e` has a log line that a logger would write at its current level."""
    line = log_line(e)
    return line is not None and logging.getLogger(line.logger).isEnabledFor(line.level)


class _Marker:
    """Internal: sets its flag when the dispatcher reaches it."""

    def __init__(self, done: threading.Event) -> None:
        self.done = done


class EventStream:
    """An iterator of events (blocking); `get(timeout)` for one. Close it when done."""

    def __init__(self, bus: EventBus, q: queue.Queue[Event]) -> None:
        self._bus, self._q = bus, q

    def get(self, timeout: float | None = None) -> Event | None:
        try:
            e = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if e is _STOP else e

    def __iter__(self) -> Iterator[Event]:
        while True:
            e = self._q.get()
            if e is _STOP:
                return
            yield e

    def close(self) -> None:
        self._bus.drop_stream(self._q)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
