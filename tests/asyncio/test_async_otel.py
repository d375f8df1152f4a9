"""clusterpool.otel on the asyncio client, with the real OpenTelemetry SDK and its in-memory
exporters: command and pipeline spans, a MOVED hop, an error, metrics."""

from __future__ import annotations

import pytest
from async_helpers import TAG_PREFIX
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis import exceptions as rx

import clusterpool
from clusterpool import otel
from clusterpool.asyncio import ClusterClient

pytestmark = pytest.mark.asyncio


class Telemetry:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, name: str | None = None):
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list:
        data = self.reader.get_metrics_data()
        return [p for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics
                for m in sm.metrics if m.name == metric for p in m.data.data_points]

    def instrument(self, client, **kw) -> otel.Instrumentation:
        return otel.instrument(client, self.tracer_provider, self.meter_provider, **kw)


@pytest.fixture
def telemetry():
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


def _key(name: str) -> str:
    return f"{{{TAG_PREFIX}otel}}:{name}"


def address(span) -> str:
    return f"{span.attributes['server.address']}:{span.attributes['server.port']}"


async def test_a_command_gets_one_client_span_with_the_redis_conventions(cluster, telemetry):
    async with ClusterClient(startup_nodes=cluster.startup_nodes) as client:
        await client.set(_key("a"), "v")
        telemetry.instrument(client)
        assert await client.get(_key("a")) == b"v"
    (span,) = telemetry.spans()
    assert span.name == "GET"
    assert span.kind is SpanKind.CLIENT
    assert span.attributes["db.system.name"] == "redis"
    assert span.attributes["db.operation.name"] == "GET"
    assert span.attributes["db.namespace"] == "0"
    slot = clusterpool.key_slot(_key("a").encode())
    assert span.attributes["server.port"] == cluster.slot_owner(slot)
    assert "db.query.text" not in span.attributes


async def test_a_pipeline_span_is_the_parent_of_its_commands_spans(cluster, telemetry):
    async with ClusterClient(startup_nodes=cluster.startup_nodes) as client:
        telemetry.instrument(client)
        async with client.pipeline() as pipe:
            pipe.set(_key("p1"), 1).set(_key("p2"), 2).get(_key("p1"))
            await pipe.execute()
    (parent,) = telemetry.spans("PIPELINE")
    assert parent.attributes["db.operation.batch.size"] == 3
    children = [s for s in telemetry.spans() if s.name != "PIPELINE"]
    assert sorted(s.name for s in children) == ["GET", "SET", "SET"]
    assert all(s.parent is not None and s.parent.span_id == parent.context.span_id for s in children)


async def test_an_error_reply_ends_the_span_with_error_status_and_type(cluster, telemetry):
    async with ClusterClient(startup_nodes=cluster.startup_nodes) as client:
        await client.set(_key("s"), "a string")
        telemetry.instrument(client)
        with pytest.raises(rx.ResponseError):
            await client.lpush(_key("s"), "x")
    (span,) = telemetry.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "redis.exceptions.ResponseError"


async def test_views_share_the_instrumentation_and_uninstrument_stops_it(cluster, telemetry):
    async with ClusterClient(startup_nodes=cluster.startup_nodes) as client:
        await client.set(_key("v"), "v")
        reader = client.reader
        inst = telemetry.instrument(client)
        await reader.get(_key("v"))
        await client.with_read_from("replica").get(_key("v"))
        inst.uninstrument()
        await client.get(_key("v"))
        await reader.get(_key("v"))
    spans = telemetry.spans()
    assert [s.name for s in spans] == ["GET", "GET"]
    replicas = {p for p in cluster.replicas()}
    assert {s.attributes["server.port"] for s in spans} <= replicas


async def test_connections_and_pending_requests_are_observed_per_node(cluster, telemetry):
    async with ClusterClient(startup_nodes=cluster.startup_nodes) as client:
        telemetry.instrument(client)
        await client.set(_key("c"), 1)
        slot = clusterpool.key_slot(_key("c").encode())
        node = f"{cluster.host}:{cluster.slot_owner(slot)}"
        counts = {p.attributes["db.client.connection.state"]: p.value
                  for p in telemetry.points("db.client.connection.count")
                  if p.attributes["db.client.connection.pool.name"] == node}
        pending = [p.value for p in telemetry.points("db.client.connection.pending_requests")
                   if p.attributes["db.client.connection.pool.name"] == node]
    assert counts["used"] >= 1  # the shared, auto-pipelined connection
    assert pending == [0]


@pytest.mark.slow
async def test_a_moved_hop_is_an_event_on_the_one_command_span(fresh_cluster, telemetry):
    c = fresh_cluster
    k = _key("m")
    async with ClusterClient(startup_nodes=c.startup_nodes) as client:
        await client.set(k, "v")
        telemetry.instrument(client)
        slot = clusterpool.key_slot(k.encode())
        src = c.slot_owner(slot)
        dst = next(p for p in c.primaries() if p != src)
        c.move_slot(slot, dst)
        assert await client.get(k) == b"v"
    (span,) = telemetry.spans("GET")
    assert [e.name for e in span.events] == ["moved"]
    assert span.events[0].attributes["clusterpool.target"] == f"{c.host}:{dst}"
    assert address(span) == f"{c.host}:{dst}"


@pytest.mark.slow
async def test_an_ask_during_a_migration_is_an_event_and_the_span_names_the_importing_node(fresh_cluster, telemetry):
    c = fresh_cluster
    k = _key("ask")
    async with ClusterClient(startup_nodes=c.startup_nodes) as client:
        await client.set(k, "v")
        telemetry.instrument(client)
        slot = clusterpool.key_slot(k.encode())
        src = c.slot_owner(slot)
        dst = next(p for p in c.primaries() if p != src)
        c.begin_migration(slot, dst)
        c.migrate_keys(slot, dst)  # the key now lives on dst; src answers ASK
        assert await client.get(k) == b"v"
    (span,) = telemetry.spans("GET")
    assert [e.name for e in span.events] == ["ask"]
    assert address(span) == f"{c.host}:{dst}"
    assert sum(p.value for p in telemetry.points("clusterpool.client.redirections")
               if p.attributes["clusterpool.redirect.kind"] == "ask") == 1
