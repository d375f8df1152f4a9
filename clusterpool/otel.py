"""OpenTelemetry spans and metrics for the sync and the asyncio ClusterClient (`redis-clusterpool[otel]`).

How this works: `instrument(client)` installs an observer (observe.py) in the state the client
shares with its views, so one call covers the client, `client.reader`, `client.writer` and
every `with_read_from()` view, made before or after the call, sync or asyncio alike; the
observer stays until `uninstrument()`. Each command gets one CLIENT span opened when the
router takes it and ended when it returns or raises, so every MOVED/ASK hop and retry is a
span event on it, and `server.address`/`server.port` name the node that answered last. Each
pipeline/transaction `execute()` gets one span ("PIPELINE" / "MULTI"); in the asyncio
pipeline each command also gets its own span, a child of the pipeline's. Attributes follow
the OpenTelemetry database semantic conventions for Redis; argument values are left out
unless `capture_statement=True` (then `db.query.text`, cut at `statement_max_length`).
Metrics: `db.client.operation.duration`, `db.client.connection.count` and (asyncio)
`db.client.connection.pending_requests` per node, and counters of redirections, retries,
timeouts, adopted maps and failovers. Nothing in clusterpool imports this module: without
it, a command pays one `is None` check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from ._version import __version__
from .cachestore import CacheStats
from .asyncio.client import ClusterClient as AsyncClusterClient
from .client import ClusterClient
from .errors import ConfigurationError
from .events import Event, RoleChanged
from .observe import Observer, Scope
from .otelmetrics import Instruments, instruments_for
from .policy import Action, Do, Failure, Kind
from .resp import command_name
from .topology import PRIMARY

__all__ = ["Instrumentation", "instrument"]

SCOPE = "clusterpool"
log = logging.getLogger("clusterpool.otel")

AnyClient = ClusterClient | AsyncClusterClient

_current: ContextVar[_Scope | None] = ContextVar("clusterpool_otel_scope", default=None)


def instrument(client: AnyClient, tracer_provider: TracerProvider | None = None,
               meter_provider: MeterProvider | None = None, *, capture_statement: bool = False,
               statement_max_length: int = 256) -> Instrumentation:
    """Trace and measure `client` and its views (the global providers when None are given)."""
    if not isinstance(client, ClusterClient | AsyncClusterClient):
        raise ConfigurationError(f"instrument() takes a clusterpool ClusterClient, not {type(client).__name__}")
    if type(statement_max_length) is not int or statement_max_length < 1:
        raise ConfigurationError(f"statement_max_length must be a positive int, not {statement_max_length!r}")
    if client.observer is not None:
        raise ConfigurationError("this client (or a view of it) is instrumented already: uninstrument() it first")
    tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
    meter = metrics.get_meter(SCOPE, __version__, meter_provider)
    inst = Instrumentation(client, tracer, instruments_for(meter), capture_statement, statement_max_length)
    inst.start()
    return inst


class Instrumentation:
    """The installed instrumentation of one client and its views; `uninstrument()` removes it."""

    def __init__(self, client: AnyClient, tracer: trace.Tracer, instruments: Instruments,
                 capture_statement: bool, statement_max_length: int) -> None:
        self.client = client
        self.capture_statement = capture_statement
        self.statement_max_length = statement_max_length
        self._observer = _OtelObserver(tracer, instruments, capture_statement, statement_max_length)
        self._instruments = instruments
        self._active = False

    def start(self) -> None:
        """Install the observer and the event hooks (instrument() calls it)."""
        self.client.set_observer(self._observer)
        self.client.on("topology_refreshed", self._on_refreshed)
        self.client.on("role_changed", self._on_role_changed)
        self._instruments.add(self)
        self._active = True

    def uninstrument(self) -> None:
        """Stop tracing and measuring the client; idempotent."""
        if not self._active:
            return
        self._active = False
        if self.client.observer is self._observer:
            self.client.set_observer(None)
        self.client.off("topology_refreshed", self._on_refreshed)
        self.client.off("role_changed", self._on_role_changed)
        self._instruments.discard(self)

    @property
    def active(self) -> bool:
        return self._active

    def __repr__(self) -> str:
        return f"<clusterpool.otel.Instrumentation {'active' if self._active else 'removed'} of {self.client!r}>"

    # ---- events the client publishes (on its event thread) --------------------------

    def _on_refreshed(self, event: Event) -> None:
        self._instruments.refreshes.add(1)

    def _on_role_changed(self, event: Event) -> None:
        if isinstance(event, RoleChanged) and event.new_role == PRIMARY and event.old_role != PRIMARY:
            attrs: dict[str, Any] = {"server.address": event.node.host, "server.port": event.node.port}
            self._instruments.failovers.add(1, attrs)

    # ---- observable gauges (read at collection time) --------------------------------

    def cache_stats(self) -> CacheStats | None:
        """The client-side cache's counters (None: no cache)."""
        return self.client.stats().cache

    def connection_counts(self) -> Iterable[tuple[str, int, int, int]]:
        """(node, used, idle, pending) for each node the client has connections to."""
        client = self.client
        if isinstance(client, ClusterClient):
            for p in client.stats().nodes:
                yield p.node, p.in_use, p.idle, 0
            return
        topo = client.topology()
        for node in topo.nodes if topo is not None else ():
            conns = client.connections(node.name)
            if conns is None:
                continue
            s = conns.stats()
            d = s.dedicated
            yield node.name, len(s.shared) + d.leased, d.idle, sum(m.pending for m in s.shared)


    def hedge_counts(self) -> Iterable[tuple[str, int]]:
        """(outcome, count) of the client's hedged reads (all zero without hedge=)."""
        h = self.client.stats().hedges
        return (("sent", h.sent), ("won", h.won), ("suppressed", h.suppressed))


def _address(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host, int(port) if port.isdigit() else 0


def error_type(error: BaseException) -> str:
    """`error.type`: the exception's fully qualified class name."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class _Scope:
    """One command's or batch's span, its timer and the node it went to last."""

    __slots__ = ("observer", "span", "operation", "node", "attrs", "start", "token", "attached")

    def __init__(self, observer: _OtelObserver, span: Span, operation: str, node: str, attrs: dict[str, Any],
                 attached: Token[otel_context.Context] | None) -> None:
        self.observer = observer
        self.span = span
        self.operation = operation
        self.node = node
        self.attrs = attrs  # the metric's attributes: the span's first ones, shared per (operation, node)
        self.attached = attached
        self.token: Token[_Scope | None] = _current.set(self)
        self.start = time.perf_counter()

    def used(self, node: str) -> None:
        if node != self.node:
            self.node = node
            self.attrs = self.observer.attributes(self.operation, node)
            if self.span.is_recording():
                self.span.set_attributes({"server.address": self.attrs["server.address"],
                                          "server.port": self.attrs["server.port"]})

    def end(self, error: BaseException | None) -> None:
        seconds = time.perf_counter() - self.start
        try:
            _current.reset(self.token)
        except ValueError:  # ended in another context than it started in: leave that context alone
            pass
        try:
            self._finish(seconds, error)
        except Exception:  # a tracing bug must not fail the user's command
            log.debug("clusterpool.otel: span not ended cleanly", exc_info=True)

    def _finish(self, seconds: float, error: BaseException | None) -> None:
        if self.attached is not None:
            otel_context.detach(self.attached)
        span = self.span
        attrs = self.attrs
        if error is not None:
            kind = error_type(error)
            attrs = {**attrs, "error.type": kind}
            if span.is_recording():
                span.set_attribute("error.type", kind)
                code = _status_code(error)
                if code:
                    span.set_attribute("db.response.status_code", code)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:512]))
        span.end()
        self.observer.instruments.duration.record(seconds, attrs)


class _NoScope:
    """What a command gets when its span could not be started."""

    def end(self, error: BaseException | None) -> None:
        pass


_NO_SCOPE = _NoScope()


def _status_code(error: BaseException) -> str:
    """The error reply's prefix (WRONGTYPE, NOSCRIPT ...), as `db.response.status_code`; "" for others."""
    from redis.exceptions import ResponseError

    if not isinstance(error, ResponseError) or not error.args:
        return ""
    head = str(error.args[0]).split(" ", 1)[0]
    return head if head.isupper() and head.isalpha() else ""


class _OtelObserver(Observer):
    """observe.Observer with OpenTelemetry spans and instruments."""

    def __init__(self, tracer: trace.Tracer, instruments: Instruments, capture_statement: bool,
                 max_length: int) -> None:
        self.tracer = tracer
        self.instruments = instruments
        self.capture_statement = capture_statement
        self.max_length = max_length
        self._attributes: dict[tuple[str, str], dict[str, Any]] = {}
        self._heads: dict[tuple[Any, str], tuple[str, dict[str, Any]]] = {}  # (args[0], node) -> name, attributes

    def attributes(self, operation: str, node: str) -> dict[str, Any]:
        """The conventions' attributes of `operation` on `node` (never changed: shared, built once)."""
        key = (operation, node)
        found = self._attributes.get(key)
        if found is None:
            found = {"db.system.name": "redis", "db.operation.name": operation, "db.namespace": "0"}
            if node:
                found["server.address"], found["server.port"] = _address(node)
            if len(self._attributes) < 4096:  # bounded: command names x nodes
                self._attributes[key] = found
        return found

    def command(self, node: str, args: Sequence[Any]) -> Scope:
        try:
            return self._command(node, args)
        except Exception:  # a tracing bug must not fail the user's command
            log.debug("clusterpool.otel: no span for a command", exc_info=True)
            return _NO_SCOPE

    def batch(self, operation: str, commands: Sequence[Sequence[Any]]) -> Scope:
        try:
            return self._batch(operation, commands)
        except Exception:
            log.debug("clusterpool.otel: no span for a batch", exc_info=True)
            return _NO_SCOPE

    def used(self, node: str) -> None:
        scope = _current.get()
        if scope is not None:
            try:
                scope.used(node)
            except Exception:
                log.debug("clusterpool.otel: node not recorded", exc_info=True)

    def failure(self, action: Action, failure: Failure, error: BaseException | None) -> None:
        try:
            self._failure(action, failure, error)
        except Exception:
            log.debug("clusterpool.otel: failure not recorded", exc_info=True)

    def _command(self, node: str, args: Sequence[Any]) -> _Scope:
        head = args[0] if args else ""
        found = self._heads.get((head, node))  # the common case: one dict lookup, no name to build
        if found is None:
            operation = command_name(args) if args else ""
            found = (operation, self.attributes(operation, node))
            if len(self._heads) < 4096 and isinstance(head, str | bytes):
                self._heads[(head, node)] = found
        operation, attrs = found
        span_attrs = attrs
        if self.capture_statement:
            span_attrs = {**attrs, "db.query.text": _statement(args, self.max_length)}
        span = self.tracer.start_span(operation, kind=SpanKind.CLIENT, attributes=span_attrs)
        return _Scope(self, span, operation, node, attrs, None)

    def _batch(self, operation: str, commands: Sequence[Sequence[Any]]) -> _Scope:
        attrs = self.attributes(operation, "")
        span_attrs: dict[str, Any] = {**attrs, "db.operation.batch.size": len(commands)}
        if self.capture_statement:
            span_attrs["db.query.text"] = _statement_of_batch(commands, self.max_length)
        span = self.tracer.start_span(operation, kind=SpanKind.CLIENT, attributes=span_attrs)
        # made current, so the asyncio pipeline's per-command spans are its children
        attached = otel_context.attach(trace.set_span_in_context(span))
        return _Scope(self, span, operation, "", attrs, attached)

    def _failure(self, action: Action, failure: Failure, error: BaseException | None) -> None:
        kind = failure.kind
        node = failure.node
        ins = self.instruments
        host, port = _address(node)
        if kind is Kind.MOVED or kind is Kind.ASK:
            ins.redirections.add(1, {"clusterpool.redirect.kind": kind.value, "server.address": host, "server.port": port})
        else:
            ins.retries.add(1, {"clusterpool.failure.kind": kind.value, "server.address": host, "server.port": port})
            if kind is Kind.TIMEOUT:
                ins.timeouts.add(1, {"server.address": host, "server.port": port})
        scope = _current.get()
        if scope is None or not scope.span.is_recording():
            return
        attrs: dict[str, Any] = {"clusterpool.node": node, "clusterpool.reason": kind.value,
                                 "clusterpool.action": action.do.value}
        if failure.target:
            attrs["clusterpool.target"] = failure.target
        if action.delay:
            attrs["clusterpool.delay"] = action.delay
        if action.give is not None:
            attrs["clusterpool.give_up"] = action.give.value
        if error is not None:
            attrs["error.type"] = error_type(error)
        name = "retry"
        if kind is Kind.MOVED:
            name = "moved"
        elif kind is Kind.ASK:
            name = "ask"
        elif action.do is Do.RAISE:
            name = "give_up"
        scope.span.add_event(name, attrs)


def _word(arg: Any) -> str:
    return arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)


def _statement(args: Sequence[Any], limit: int) -> str:
    out = " ".join(_word(a) for a in args)
    return out if len(out) <= limit else out[:limit]


def _statement_of_batch(commands: Sequence[Sequence[Any]], limit: int) -> str:
    parts: list[str] = []
    size = 0
    for args in commands:
        part = _statement(args, limit)
        parts.append(part)
        size += len(part) + 1
        if size > limit:
            break
    out = "\n".join(parts)
    return out if len(out) <= limit else out[:limit]
