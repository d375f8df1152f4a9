"""clusterpool.otel on the sync client, with the real OpenTelemetry SDK and its in-memory
exporters, against real clusters: spans, their events for MOVED/ASK/retries, metrics."""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from redis import exceptions as rx
from redis.backoff import EqualJitterBackoff
from redis.retry import Retry
from waiting import poll

import clusterpool
from clusterpool import ClusterClient, ConfigurationError, otel


@dataclass
class Telemetry:
    """An SDK tracer and meter provider whose data the test reads back."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list:
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        out.extend(m.data.data_points)
        return out

    def total(self, metric: str, **attrs) -> float:
        return sum(p.value for p in self.points(metric)
                   if all(p.attributes.get(k) == v for k, v in attrs.items()))

    def instrument(self, client, **kw) -> otel.Instrumentation:
        return otel.instrument(client, tracer_provider=self.tracer_provider,
                               meter_provider=self.meter_provider, **kw)


@pytest.fixture
def telemetry():
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield Telemetry(exporter, reader, tp, mp)
    tp.shutdown()
    mp.shutdown()


@pytest.fixture
def client(cluster):
    c = ClusterClient(startup_nodes=cluster.startup_nodes)
    yield c
    c.close()


def key(name: str = "k") -> str:
    return f"{{otel{uuid.uuid4().hex[:8]}}}:{name}"


def address(span: ReadableSpan) -> str:
    return f"{span.attributes['server.address']}:{span.attributes['server.port']}"


# ---- spans of single commands --------------------------------------------------------------

def test_a_command_gets_one_client_span_with_the_redis_conventions(client, telemetry):
    k = key()
    client.set(k, "v")
    telemetry.instrument(client)
    assert client.get(k) == b"v"
    (span,) = telemetry.spans()
    assert span.name == "GET"
    assert span.kind is SpanKind.CLIENT
    assert span.attributes["db.system.name"] == "redis"
    assert span.attributes["db.operation.name"] == "GET"
    assert span.attributes["db.namespace"] == "0"
    assert address(span) == client.node_for(k).name
    assert span.status.status_code is StatusCode.UNSET
    assert not span.events


def test_argument_values_are_left_out_by_default(client, telemetry):
    telemetry.instrument(client)
    client.set(key(), "hunter2-secret")
    (span,) = telemetry.spans()
    assert "db.query.text" not in span.attributes
    assert not any("hunter2" in str(v) for v in span.attributes.values())


def test_capture_statement_records_the_command_cut_at_the_cap(client, telemetry):
    telemetry.instrument(client, capture_statement=True, statement_max_length=24)
    k = key()
    client.set(k, "x" * 100)
    (span,) = telemetry.spans()
    assert span.attributes["db.query.text"] == f"SET {k} {'x' * 100}"[:24]


def test_a_bad_statement_cap_is_refused_before_anything_is_installed(client, telemetry):
    with pytest.raises(ConfigurationError, match="statement_max_length"):
        telemetry.instrument(client, statement_max_length=0)
    assert client.observer is None


def test_an_error_reply_ends_the_span_with_error_status_and_type(client, telemetry):
    k = key()
    client.set(k, "a string")
    telemetry.instrument(client)
    with pytest.raises(rx.ResponseError):
        client.lpush(k, "x")
    (span,) = telemetry.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "redis.exceptions.ResponseError"
    assert span.attributes["db.response.status_code"] == "WRONGTYPE"


# ---- batches --------------------------------------------------------------------------------

def test_a_pipeline_gets_one_span_with_its_batch_size(client, telemetry):
    telemetry.instrument(client)
    with client.pipeline() as pipe:
        pipe.set(key("a"), 1).set(key("b"), 2).get(key("c"))
        pipe.execute()
    (span,) = telemetry.spans()
    assert span.name == "PIPELINE"
    assert span.attributes["db.operation.name"] == "PIPELINE"
    assert span.attributes["db.operation.batch.size"] == 3
    assert span.attributes["db.system.name"] == "redis"


def test_a_transaction_gets_one_multi_span_on_its_slot_primary(client, telemetry):
    k = key()
    telemetry.instrument(client)
    with client.pipeline(transaction=True) as pipe:
        pipe.set(k, 1).incr(k)
        assert pipe.execute()[1] == 2
    (span,) = telemetry.spans()
    assert span.name == "MULTI"
    assert span.attributes["db.operation.batch.size"] == 2
    assert address(span) == client.node_for(k).name


# ---- views, removal --------------------------------------------------------------------------

def test_views_made_before_and_after_instrumenting_are_traced(client, telemetry, cluster):
    k = key()
    client.set(k, "v")
    reader = client.reader  # made before instrument()
    telemetry.instrument(client)
    reader.get(k)
    client.writer.get(k)
    client.with_read_from("replica").get(k)
    spans = telemetry.spans("GET")
    assert len(spans) == 3
    replicas = {f"{cluster.host}:{p}" for p in cluster.replicas()}
    assert address(spans[0]) in replicas
    assert address(spans[1]) == client.node_for(k).name


def test_instrumenting_a_view_of_an_instrumented_client_is_refused(client, telemetry):
    telemetry.instrument(client)
    with pytest.raises(ConfigurationError, match="instrumented already"):
        telemetry.instrument(client.reader)


def test_uninstrument_stops_spans(client, telemetry):
    k = key()
    inst = telemetry.instrument(client)
    client.set(k, 1)
    inst.uninstrument()
    client.get(k)
    client.reader.get(k)
    assert [s.name for s in telemetry.spans()] == ["SET"]
    assert client.observer is None
    inst.uninstrument()  # idempotent


class _BrokenTracer(trace.NoOpTracer):
    def start_span(self, *args, **kwargs):
        raise RuntimeError("a tracing bug")


class _BrokenProvider(trace.NoOpTracerProvider):
    def get_tracer(self, *args, **kwargs):
        return _BrokenTracer()


def test_a_broken_tracer_never_fails_a_command(client, telemetry):
    otel.instrument(client, _BrokenProvider(), telemetry.meter_provider)
    k = key()
    assert client.set(k, "v") is True
    with client.pipeline() as pipe:
        assert pipe.get(k).execute() == [b"v"]


def test_clusterpool_runs_without_opentelemetry_unless_otel_is_imported():
    # redis-py imports the SDK itself when it is installed: block it, then use both clients' modules
    code = ("import sys; sys.modules['opentelemetry'] = None; "
            "import clusterpool, clusterpool.asyncio, clusterpool.observe\n"
            "try:\n    import clusterpool.otel\nexcept ImportError:\n    print('otel needs opentelemetry')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "otel needs opentelemetry"


# ---- metrics --------------------------------------------------------------------------------

def test_each_command_is_measured_in_the_duration_histogram(client, telemetry):
    telemetry.instrument(client)
    k = key()
    for _ in range(3):
        client.set(k, 1)
    client.get(k)
    points = telemetry.points("db.client.operation.duration")
    sets = [p for p in points if p.attributes["db.operation.name"] == "SET"]
    assert sum(p.count for p in sets) == 3
    assert sets[0].attributes["db.system.name"] == "redis"
    assert f"{sets[0].attributes['server.address']}:{sets[0].attributes['server.port']}" == client.node_for(k).name


def test_a_failed_command_is_measured_with_its_error_type(client, telemetry):
    k = key()
    client.set(k, "a string")
    telemetry.instrument(client)
    with pytest.raises(rx.ResponseError):
        client.lpush(k, "x")
    (point,) = [p for p in telemetry.points("db.client.operation.duration")
                if p.attributes["db.operation.name"] == "LPUSH"]
    assert point.attributes["error.type"] == "redis.exceptions.ResponseError"


def test_two_clients_on_one_meter_provider_are_both_observed(cluster, client, telemetry):
    with ClusterClient(startup_nodes=cluster.startup_nodes, max_connections=7) as other:
        telemetry.instrument(client)
        telemetry.instrument(other)
        k = key()
        client.set(k, 1)
        other.set(k, 1)
        node = client.node_for(k).name
        idle = [p.value for p in telemetry.points("db.client.connection.count")
                if p.attributes["db.client.connection.pool.name"] == node
                and p.attributes["db.client.connection.state"] == "idle"]
        assert idle and idle[0] >= 2  # one idle connection of each client, summed per node


def test_connection_counts_are_observed_per_node_and_state(client, telemetry):
    telemetry.instrument(client)
    k = key()
    client.set(k, 1)
    points = telemetry.points("db.client.connection.count")
    node = client.node_for(k).name
    mine = {p.attributes["db.client.connection.state"]: p.value for p in points
            if p.attributes["db.client.connection.pool.name"] == node}
    assert mine["used"] == 0
    assert mine["idle"] >= 1


# ---- redirections and failover (private clusters) ---------------------------------------------

def _moved_slot(c, client, k):
    """Move `k`'s slot to another primary behind the client's back; returns the new owner's name."""
    slot = clusterpool.key_slot(k.encode())
    src = c.slot_owner(slot)
    dst = next(p for p in c.primaries() if p != src)
    c.begin_migration(slot, dst)
    c.migrate_keys(slot, dst)
    c.finish_migration(slot, dst)
    return f"{c.host}:{dst}", f"{c.host}:{src}"


@pytest.mark.slow
def test_a_moved_hop_is_an_event_on_the_one_command_span(fresh_cluster, telemetry):
    c = fresh_cluster
    with ClusterClient(startup_nodes=c.startup_nodes) as client:
        k = key()
        client.set(k, "v")
        telemetry.instrument(client)
        dst, src = _moved_slot(c, client, k)
        assert client.get(k) == b"v"
        (span,) = telemetry.spans("GET")
        (event,) = span.events
        assert event.name == "moved"
        assert event.attributes["clusterpool.node"] == src
        assert event.attributes["clusterpool.target"] == dst
        assert address(span) == dst  # the node used last
        assert telemetry.total("clusterpool.client.redirections", **{"clusterpool.redirect.kind": "moved"}) == 1


@pytest.mark.slow
def test_a_moved_hop_in_a_pipeline_is_an_event_on_the_pipeline_span(fresh_cluster, telemetry):
    c = fresh_cluster
    with ClusterClient(startup_nodes=c.startup_nodes) as client:
        k = key()
        client.set(k, "v")
        telemetry.instrument(client)
        dst, src = _moved_slot(c, client, k)
        with client.pipeline() as pipe:
            pipe.get(k)
            assert pipe.execute() == [b"v"]
        (span,) = telemetry.spans("PIPELINE")
        assert [e.name for e in span.events] == ["moved"]
        assert span.events[0].attributes["clusterpool.target"] == dst
        assert address(span) == dst


@pytest.mark.slow
def test_an_ask_during_a_migration_is_an_event_and_the_span_names_the_importing_node(fresh_cluster, telemetry):
    c = fresh_cluster
    with ClusterClient(startup_nodes=c.startup_nodes) as client:
        k = key()
        client.set(k, "v")
        slot = clusterpool.key_slot(k.encode())
        src = c.slot_owner(slot)
        dst = next(p for p in c.primaries() if p != src)
        telemetry.instrument(client)
        c.begin_migration(slot, dst)
        c.migrate_keys(slot, dst)  # the key now lives on dst; src answers ASK
        assert client.get(k) == b"v"
        (span,) = telemetry.spans("GET")
        assert [e.name for e in span.events] == ["ask"]
        assert span.events[0].attributes["clusterpool.target"] == f"{c.host}:{dst}"
        assert address(span) == f"{c.host}:{dst}"
        assert telemetry.total("clusterpool.client.redirections", **{"clusterpool.redirect.kind": "ask"}) == 1


@pytest.mark.slow
@pytest.mark.chaos
def test_a_failover_shows_retry_events_on_the_command_and_is_counted(fresh_cluster, telemetry):
    c = fresh_cluster
    retry = Retry(EqualJitterBackoff(cap=0.5, base=0.05), 1)
    with ClusterClient(startup_nodes=c.startup_nodes, retry=retry, retry_timeout=30, socket_timeout=1,
                       socket_connect_timeout=0.5) as client:
        k = key()
        client.set(k, "before")
        victim = client.node_for(k)
        telemetry.instrument(client)
        c.kill(victim.port)
        assert client.set(k, "after") is True  # rides out the failover
        (span,) = telemetry.spans("SET")
        retries = [e for e in span.events if e.name == "retry"]
        assert retries
        assert {e.attributes["clusterpool.node"] for e in retries} == {victim.name}
        assert retries[0].attributes["clusterpool.reason"] in ("connection", "timeout")
        assert address(span) != victim.name
        assert span.status.status_code is StatusCode.UNSET
        poll(lambda: telemetry.total("clusterpool.client.failovers") >= 1, what="a failover counted")
        assert telemetry.total("clusterpool.client.topology.refreshes") >= 1
        assert telemetry.total("clusterpool.client.retries") >= len(retries)


@pytest.mark.slow
@pytest.mark.chaos
def test_timeouts_on_a_paused_node_are_counted_and_end_the_span_with_the_timeout(fresh_cluster, telemetry):
    from redis.backoff import NoBackoff

    c = fresh_cluster
    with ClusterClient(startup_nodes=c.startup_nodes, retry=Retry(NoBackoff(), 1), socket_timeout=0.3,
                       socket_connect_timeout=0.3) as client:
        k = key()
        client.set(k, "v")
        node = client.node_for(k)
        telemetry.instrument(client)
        c.pause(node.port)
        try:
            with pytest.raises(rx.TimeoutError):
                client.get(k)
        finally:
            c.resume(node.port)
        (span,) = telemetry.spans("GET")
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == "redis.exceptions.TimeoutError"
        assert [e.attributes["clusterpool.reason"] for e in span.events] == ["timeout", "timeout"]
        assert span.events[-1].name == "give_up"
        assert telemetry.total("clusterpool.client.timeouts", **{"server.port": node.port}) == 2


def test_the_client_side_cache_is_observed_as_requests_by_result_and_size(cluster, telemetry):
    from clusterpool import CacheConfig
    from waiting import poll

    with ClusterClient(startup_nodes=cluster.startup_nodes, cache_config=CacheConfig()) as client:
        telemetry.instrument(client)
        k = key("cached")
        client.set(k, "v")
        poll(lambda: client.get(k) and client.stats().cache.hits > 0, 10, what="a cache hit")
        assert telemetry.total("clusterpool.client.cache.requests", **{"clusterpool.cache.result": "hit"}) >= 1
        assert telemetry.total("clusterpool.client.cache.entries") >= 1
        assert telemetry.total("clusterpool.client.cache.size") > 0
