"""OpenTelemetry spans from traces (`asgitrace.otel`), in memory and over OTLP/HTTP."""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.instrumentation.asgi")

from fastapi import FastAPI
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from asgitrace import Trace, TraceMiddleware, Tracer, otel
from asgitrace.otel import OTelExporter, instrument_otel

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def memory() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider, spans
    provider.shutdown()


@pytest.fixture
def made() -> Iterator[list[OTelExporter]]:
    """Exporters made by a test: their threads are stopped even when it fails."""
    exporters: list[OTelExporter] = []
    yield exporters
    for exporter in exporters:
        exporter.close()


def settled(exporter: OTelExporter, made: list[OTelExporter]) -> OTelExporter:
    made.append(exporter)
    return exporter


@pytest.fixture
def exporter(
    memory: tuple[TracerProvider, InMemorySpanExporter], made: list[OTelExporter]
) -> OTelExporter:
    """A background exporter to `memory`'s provider, closed after the test."""
    provider, _ = memory
    return settled(OTelExporter(provider), made)


@pytest.fixture
def app(make_app: Any) -> FastAPI:
    """A fresh app whose ``/items/{item_id}`` waits (one wait span a request)."""
    return make_app(slow_items=True)


async def get(app: Any, *paths: str, headers: dict[str, str] | None = None) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in paths:
            await client.get(path, headers=headers)


async def traced(
    make_app: Any,
    provider: TracerProvider,
    *paths: str,
    headers: dict[str, str] | None = None,
    **options: Any,
) -> tuple[Tracer, OTelExporter]:
    """Serve *paths* through a traced app exporting to *provider*; return once the spans
    are made (the exporter is closed)."""
    exporter = OTelExporter(provider, **options)
    try:
        tracer = Tracer(blocking_threshold=make_app.blocking_threshold, on_trace=exporter)
        app = make_app(slow_items=True)
        app.add_middleware(TraceMiddleware, tracer=tracer)
        await get(app, *paths, headers=headers)
    finally:
        exporter.close()
    return tracer, exporter


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def attrs(span: Any) -> dict[str, Any]:
    """A span's (or span event's) attributes as a plain dict."""
    return dict(span.attributes or {})


def times(span: ReadableSpan) -> tuple[int, int]:
    assert span.start_time is not None
    assert span.end_time is not None
    return span.start_time, span.end_time


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def epoch_ns(trace: Trace, t_ns: int) -> int:
    return round(trace.start * 1e9) + t_ns - trace.start_ns


async def test_request_span_with_http_attributes_events_and_wait_child(
    memory: tuple[TracerProvider, InMemorySpanExporter], make_app: Any
) -> None:
    provider, spans = memory
    tracer, _ = await traced(make_app, provider, "/items/7?token=abc&q=1")
    trace = tracer.traces[0]
    named = by_name(spans.get_finished_spans())
    [root] = named["GET /items/{item_id}"]
    [wait] = named["await asyncio.sleep(DELAY)"]
    assert set(named) == {"GET /items/{item_id}", "await asyncio.sleep(DELAY)"}
    assert root.kind is SpanKind.SERVER
    assert root.parent is None
    assert root.status.status_code is StatusCode.UNSET
    attributes = attrs(root)
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == "/items/7"
    assert attributes["url.query"] == "token=[redacted]&q=1"
    assert attributes["http.route"] == "/items/{item_id}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["network.protocol.version"] == "1.1"
    assert attributes["user_agent.original"].startswith("python-httpx/")
    assert attributes["asgitrace.trace_id"] == trace.id
    assert attributes["asgitrace.outcome"] == "completed"
    assert attributes["asgitrace.task.name"] == trace.task.name
    assert attributes["asgitrace.waits"] == 1
    assert attributes["asgitrace.blocked"] == len(trace.blocking())
    assert "error.type" not in attributes
    # Times: the trace's wall-clock start plus its monotonic offsets.
    assert root.start_time == epoch_ns(trace, trace.start_ns)
    assert root.end_time == epoch_ns(trace, trace.end_ns)
    assert parent_of(wait) == root.context.span_id
    assert wait.context.trace_id == root.context.trace_id
    assert wait.kind is SpanKind.INTERNAL
    root_start, root_end = times(root)
    wait_start, wait_end = times(wait)
    assert root_start < wait_start < wait_end <= root_end
    [resumed] = trace.of_kind("resumed")
    assert wait_end - wait_start == resumed.get("waited_ns")
    wait_attributes = attrs(wait)
    [awaiting] = trace.awaits()
    assert wait_attributes["code.function"] == awaiting.get("function")
    assert wait_attributes["code.filepath"] == make_app.source
    assert wait_attributes["code.lineno"] == awaiting.get("line")
    assert wait_attributes["asgitrace.code"] == "await asyncio.sleep(DELAY)"
    assert wait_attributes["asgitrace.target"] == "asyncio.sleep(DELAY)"
    assert wait_attributes["asgitrace.waited_ns"] == resumed.get("waited_ns")
    assert wait_attributes["asgitrace.lag_ns"] == resumed.get("lag_ns")
    assert wait_attributes["asgitrace.task.name"] == trace.task.name
    assert wait_attributes["asgitrace.cooperative"] is False
    events = [(e.name, dict(e.attributes or {})) for e in root.events]
    names = [name for name, _ in events]
    assert names[0] == "received"
    assert names[-1] == "completed"
    assert ("sent", {"type": "http.response.start", "status": 200}) in [
        (n, {k: a[k] for k in ("type", "status") if k in a}) for n, a in events
    ]
    timestamps = [e.timestamp for e in root.events]
    assert timestamps == sorted(timestamps)
    assert root_start <= timestamps[0]
    assert timestamps[-1] <= root_end


async def test_blocking_step_is_a_child_span_named_after_the_line(
    memory: tuple[TracerProvider, InMemorySpanExporter], make_app: Any
) -> None:
    provider, spans = memory
    tracer, _ = await traced(make_app, provider, "/block")
    trace = tracer.traces[0]
    # The longest blocked step is the sleep (a loaded machine may add short ones); its line
    # comes from one stack sample, named as the trace recorded it.
    event = max(trace.blocking(), key=lambda e: e.get("duration_ns"))
    named = by_name(spans.get_finished_spans())
    [root] = named["GET /block"]
    [blocked] = [
        s
        for s in named[f"blocked {event.get('code') or event.get('function') or 'step'}"]
        if attrs(s)["asgitrace.duration_ns"] == event.get("duration_ns")
    ]
    assert parent_of(blocked) == root.context.span_id
    blocked_start, blocked_end = times(blocked)
    assert blocked_end - blocked_start == event.get("duration_ns")
    attributes = attrs(blocked)
    assert attributes.get("code.lineno") == event.get("line")
    assert attributes.get("code.function") == event.get("function")
    assert attributes["asgitrace.duration_ns"] >= make_app.slow * 1e9
    assert isinstance(attributes["asgitrace.stack"], tuple)
    assert attrs(root)["asgitrace.blocked"] == len(trace.blocking())


async def test_child_tasks_are_spans_holding_their_own_waits(
    memory: tuple[TracerProvider, InMemorySpanExporter], make_app: Any
) -> None:
    provider, spans = memory
    await traced(make_app, provider, "/gather", "/child-fails")
    named = by_name(spans.get_finished_spans())
    [gather_root] = named["GET /gather"]
    tasks = [s for s in named["task make_app.<locals>.child"] if s.parent is not None]
    gather_tasks = [s for s in tasks if parent_of(s) == gather_root.context.span_id]
    assert len(gather_tasks) == 2
    waits = named["await asyncio.sleep(0.001 * n)"]
    for task in gather_tasks:
        [own] = [w for w in waits if parent_of(w) == task.context.span_id]
        task_start, task_end = times(task)
        own_start, own_end = times(own)
        assert task_start <= own_start < own_end <= task_end
        assert attrs(task)["asgitrace.task.outcome"] == "completed"
    [failing] = [s for s in tasks if s not in gather_tasks]
    assert failing.status.status_code is StatusCode.ERROR
    assert failing.status.description == "KeyError"


async def test_a_traceparent_header_joins_the_callers_trace(
    memory: tuple[TracerProvider, InMemorySpanExporter], make_app: Any
) -> None:
    provider, spans = memory
    await traced(make_app, provider, "/items/1", headers={"traceparent": TRACEPARENT})
    [root] = by_name(spans.get_finished_spans())["GET /items/{item_id}"]
    assert root.kind is SpanKind.SERVER
    assert f"{root.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert root.parent is not None
    assert f"{root.parent.span_id:016x}" == "b7ad6b7169203331"


@pytest.mark.parametrize(
    ("path", "status_code", "error_type"),
    [
        ("/boom", StatusCode.ERROR, "500"),
        ("/crash", StatusCode.ERROR, "RuntimeError"),
        ("/missing", StatusCode.UNSET, None),
    ],
)
async def test_errors_follow_the_http_conventions(
    memory: tuple[TracerProvider, InMemorySpanExporter],
    path: str,
    status_code: StatusCode,
    error_type: str | None,
    make_app: Any,
) -> None:
    provider, spans = memory
    await traced(make_app, provider, path)
    [root] = by_name(spans.get_finished_spans())[f"GET {path}"]
    assert root.status.status_code is status_code
    assert attrs(root).get("error.type") == error_type


async def test_short_waits_can_be_left_out(
    memory: tuple[TracerProvider, InMemorySpanExporter], make_app: Any
) -> None:
    provider, spans = memory
    await traced(make_app, provider, "/yield", min_wait=0.015)
    named = by_name(spans.get_finished_spans())
    assert "await asyncio.sleep(0.02)" in named
    assert "await asyncio.sleep(0) (cooperative yield)" not in named
    attributes = attrs(named["GET /yield"][0])
    assert attributes["asgitrace.waits"] >= 2
    assert attributes["asgitrace.waits_skipped"] >= 1


def make_trace(trace_id: str = "x", path: str = "/real", task_id: int = 424242) -> Trace:
    return Trace.from_dict(
        {
            "schema_version": 1,
            "id": trace_id,
            "type": "http",
            "method": "GET",
            "path": path,
            "route": None,
            "query": "",
            "headers": [],
            "response_headers": [],
            "status": 200,
            "start": 1_700_000_000.0,
            "start_ns": 0,
            "end_ns": 10,
            "dropped": 0,
            "events": [
                {
                    "seq": 1,
                    "t_ns": 10,
                    "kind": "completed",
                    "task": {"id": task_id, "name": "t"},
                    "fields": {"status": 200},
                }
            ],
        }
    )


def test_by_default_spans_are_made_off_the_calling_thread(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = memory
    exporter = OTelExporter(provider)
    threads: list[str] = []

    class ThreadSpy(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            threads.append(threading.current_thread().name)

    provider.add_span_processor(ThreadSpy(InMemorySpanExporter()))
    try:
        exporter(make_trace())
        assert exporter.flush(10)
    finally:
        exporter.close()
    assert threads == ["asgitrace-otel"]
    assert (exporter.exported, exporter.dropped) == (1, 0)
    exporter(make_trace("late"))  # after close: dropped, not exported
    assert (exporter.exported, exporter.dropped) == (1, 1)
    assert [s.name for s in spans.get_finished_spans()] == ["GET /real"]
    assert exporter.flush() is True


def test_a_failing_export_is_logged_counted_and_the_next_one_goes_on(
    memory: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, spans = memory
    real = otel._Export.run

    def flaky(self: Any) -> None:
        if self.trace.id == "bad":
            raise RuntimeError("bug")
        real(self)

    monkeypatch.setattr(otel._Export, "run", flaky)
    exporter = OTelExporter(provider)
    with caplog.at_level(logging.ERROR, logger="asgitrace"):
        try:
            exporter(make_trace("bad"))
            exporter(make_trace("good"))
        finally:
            exporter.close()
    assert "asgitrace-otel handling a trace" in caplog.text
    assert (exporter.exported, exporter.dropped) == (1, 1)
    assert len(spans.get_finished_spans()) == 1


def test_inline_exporter_has_no_thread_and_nothing_to_flush(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = memory
    exporter = OTelExporter(provider, background=False)
    exporter(make_trace())
    assert len(spans.get_finished_spans()) == 1
    assert exporter.flush() is True
    exporter.close()
    assert (exporter.exported, exporter.dropped) == (0, 0)


def test_exporter_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="min_wait"):
        OTelExporter(min_wait=-1)
    with pytest.raises(ValueError, match="max_pending"):
        OTelExporter(max_pending=0)
    with pytest.raises(ValueError, match="max_queue"):
        OTelExporter(max_queue=0)


def test_a_hand_built_trace_with_unfinished_work_exports_cleanly(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = memory
    task = {"id": 1, "name": "Task-1"}
    child = {"id": 2, "name": "worker"}
    raw = [
        (10, "received", task, {}),
        (20, "spawned", child, {"parent": task, "coro": "pump"}),
        (25, "resumed", child, {"waited_ns": 0}),  # its suspension was dropped
        (30, "awaiting", child, {"watched": {"x": "1", "gone": None, "d": {}}, "when": None}),
        (30, "yielded", child, {}),
        (40, "sent", child, {"type": "websocket.send", "text_chars": 2}),
        (50, "blocked", task, {"duration_ns": 5, "stack": ["a:1 in f"], "parent": task}),
        (60, "task_done", task, {}),
        (70, "task_done", {"id": 9, "name": "x"}, {}),
        (80, "spawned", {"id": 5, "name": "w"}, {"coro": None}),
        (1_000, "completed", task, {}),
    ]
    trace = Trace.from_dict(
        {
            "schema_version": 1,
            "id": "hand",
            "type": "websocket",
            "method": None,
            "path": "/ws",
            "route": None,
            "query": "",
            "headers": [],
            "response_headers": [],
            "status": 101,
            "start": 1_700_000_000.0,
            "start_ns": 0,
            "end_ns": 1_000,
            "dropped": 3,
            "events": [
                {"seq": n, "t_ns": t, "kind": k, "task": who, "fields": f}
                for n, (t, k, who, f) in enumerate(raw, 1)
            ],
        }
    )
    OTelExporter(provider, background=False)(trace)
    named = by_name(spans.get_finished_spans())
    [root] = named["WEBSOCKET /ws"]
    assert root.end_time == 1_700_000_000_000_001_000
    [task_span] = named["task pump"]
    [orphan] = named["task w"]
    assert parent_of(orphan) == root.context.span_id
    [wait] = named["await"]
    assert parent_of(wait) == task_span.context.span_id
    assert attrs(task_span)["asgitrace.unfinished"] is True
    wait_attributes = attrs(wait)
    assert wait_attributes["asgitrace.unfinished"] is True
    assert wait_attributes["asgitrace.watched.x"] == "1"
    assert "asgitrace.watched.gone" not in wait_attributes
    assert wait_attributes["asgitrace.watched.d"] == "{}"
    assert "asgitrace.when" not in wait_attributes
    assert wait.end_time == root.end_time
    [blocked] = named["blocked step"]
    assert attrs(blocked)["asgitrace.stack"] == ("a:1 in f",)
    assert attrs(blocked)["asgitrace.parent"] == "Task-1"
    [sent] = [e for e in root.events if e.name == "sent"]
    assert attrs(sent)["task"] == "worker"
    assert "http.request.method" not in attrs(root)
    assert attrs(root)["asgitrace.dropped"] == 3


# -- attaching to OpenTelemetry's own ASGI instrumentation --------------------------------


def server_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]


def assert_attached(spans: InMemorySpanExporter) -> None:
    """One server span (OpenTelemetry's); asgitrace's request span is its child."""
    [server] = server_spans(spans)
    [ours] = [s for s in spans.get_finished_spans() if s.name == "asgitrace GET /items/{item_id}"]
    assert ours.kind is SpanKind.INTERNAL
    assert parent_of(ours) == server.context.span_id
    assert ours.context.trace_id == server.context.trace_id
    [wait] = [s for s in spans.get_finished_spans() if s.name.startswith("await ")]
    assert parent_of(wait) == ours.context.span_id
    assert "http.route" in attrs(ours)


async def serve_and_flush(
    app: Any, exporter: OTelExporter, *paths: str, headers: dict[str, str] | None = None
) -> None:
    """Serve *paths*, then wait until *exporter* has made their spans."""
    await get(app, *paths, headers=headers)
    assert exporter.flush(10)


async def test_inside_otels_middleware_the_request_span_attaches_by_itself(
    memory: tuple[TracerProvider, InMemorySpanExporter], exporter: OTelExporter, app: FastAPI
) -> None:
    provider, spans = memory
    app.add_middleware(TraceMiddleware, tracer=Tracer(on_trace=exporter))
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
    await serve_and_flush(app, exporter, "/items/1", headers={"traceparent": TRACEPARENT})
    assert_attached(spans)
    [server] = server_spans(spans)
    assert f"{server.context.trace_id:032x}" == TRACEPARENT.split("-")[1]


async def test_outside_otels_middleware_wrap_attaches_the_request_span(
    memory: tuple[TracerProvider, InMemorySpanExporter], exporter: OTelExporter, app: FastAPI
) -> None:
    provider, spans = memory
    app.add_middleware(exporter.wrap)
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
    app.add_middleware(TraceMiddleware, tracer=Tracer(on_trace=exporter))
    await serve_and_flush(app, exporter, "/items/1")
    assert_attached(spans)
    assert repr(exporter) == "<OTelExporter pending=0 exported=1 dropped=0>"


async def test_outside_otels_middleware_without_wrap_there_are_two_roots(
    memory: tuple[TracerProvider, InMemorySpanExporter], exporter: OTelExporter, app: FastAPI
) -> None:
    """Why `wrap` exists: the trace finishes after OpenTelemetry's span has ended."""
    provider, spans = memory
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
    app.add_middleware(TraceMiddleware, tracer=Tracer(on_trace=exporter))
    await serve_and_flush(app, exporter, "/items/1")
    assert len(server_spans(spans)) == 2


async def test_instrument_otel_builds_the_stack_in_the_right_order(
    memory: tuple[TracerProvider, InMemorySpanExporter], app: FastAPI
) -> None:
    provider, spans = memory
    tracer = Tracer()
    instrumented = instrument_otel(app, tracer, tracer_provider=provider)
    await get(instrumented, "/items/1", "/items/2")
    [exporter] = tracer._callbacks  # the one instrument_otel made
    assert isinstance(exporter, OTelExporter)
    exporter.close()
    assert len(tracer.traces) == 2
    assert len(server_spans(spans)) == 2
    ours = [s for s in spans.get_finished_spans() if s.name.startswith("asgitrace ")]
    assert {parent_of(s) for s in ours} == {s.context.span_id for s in server_spans(spans)}


async def test_instrument_otel_makes_a_tracer_when_none_is_given(
    memory: tuple[TracerProvider, InMemorySpanExporter], exporter: OTelExporter, app: FastAPI
) -> None:
    provider, spans = memory
    instrumented = instrument_otel(app, exporter=exporter, tracer_provider=provider)
    await serve_and_flush(instrumented, exporter, "/items/1")
    assert_attached(spans)


async def test_wrap_remembers_a_bounded_number_of_parents(
    memory: tuple[TracerProvider, InMemorySpanExporter],
    made: list[OTelExporter],
    app: FastAPI,
) -> None:
    """Inside asgitrace's middleware, `wrap` relies on the trace to collect its entry;
    traces that are not kept (slow-only retention) leave entries behind, up to a bound."""
    provider, _ = memory
    exporter = settled(OTelExporter(provider, max_pending=2), made)
    tracer = Tracer(on_trace=exporter, slow_threshold=60)
    app.add_middleware(exporter.wrap)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await asyncio.gather(*(client.get(f"/items/{n}") for n in range(3)))
    assert repr(exporter) == "<OTelExporter pending=2 exported=0 dropped=0>"


async def test_wrap_passes_other_scopes_and_spanless_requests_through(
    exporter: OTelExporter,
) -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    wrapped = exporter.wrap(app)

    async def nothing() -> dict[str, Any]:  # pragma: no cover - never called
        return {}

    async def ignore(message: Any) -> None:  # pragma: no cover - never called
        return None

    await wrapped({"type": "lifespan"}, nothing, ignore)
    await wrapped({"type": "http", "path": "/"}, nothing, ignore)  # no span is current
    assert calls == ["lifespan", "http"]
    assert repr(exporter) == "<OTelExporter pending=0 exported=0 dropped=0>"


async def test_wrap_fails_open(
    memory: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    exporter: OTelExporter,
    app: FastAPI,
) -> None:
    provider, spans = memory

    def broken(scope: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(OTelExporter, "_remember", lambda self, scope: broken(scope))
    app.add_middleware(exporter.wrap)
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=provider)
    with caplog.at_level(logging.ERROR, logger="asgitrace"):
        await get(app, "/items/1")
    assert "OTelExporter.wrap" in caplog.text
    assert len(server_spans(spans)) == 1


def test_a_remembered_parent_for_another_path_is_not_used(
    memory: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, spans = memory
    exporter = OTelExporter(provider, background=False)
    trace = make_trace()
    otel_tracer = provider.get_tracer("test")
    with otel_tracer.start_as_current_span("elsewhere") as elsewhere:
        context = elsewhere.get_span_context()
    exporter._pending[424242] = (context, "/other")
    exporter(trace)
    [root] = [s for s in spans.get_finished_spans() if s.name == "GET /real"]
    assert root.kind is SpanKind.SERVER
    assert root.parent is None


# -- over the wire: OTLP/HTTP to a local receiver -----------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_spans_reach_an_otlp_http_receiver(make_app: Any) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    handler: Any = type("Receiver", (_Receiver,), {"bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    provider = TracerProvider()
    try:
        port = server.server_address[1]
        otlp = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=10)
        provider.add_span_processor(BatchSpanProcessor(otlp))
        tracer, _ = await traced(make_app, provider, "/items/7?q=1", "/block")
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()
        server.shutdown()
        server.server_close()
        thread.join(10)
    spans = []
    for body in handler.bodies:
        request = trace_service.ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == "asgitrace"
                spans.extend(scope_spans.spans)
    names = {s.name: s for s in spans}
    blocking = max(tracer.traces[1].blocking(), key=lambda e: e.get("duration_ns"))
    blocked_name = f"blocked {blocking.get('code') or blocking.get('function') or 'step'}"
    assert {
        "GET /items/{item_id}",
        "await asyncio.sleep(DELAY)",
        "GET /block",
        blocked_name,
    } <= set(names)
    assert all(name.startswith(("GET ", "await ", "blocked ")) for name in names)
    root = names["GET /items/{item_id}"]
    assert root.kind == root.SPAN_KIND_SERVER
    assert names["await asyncio.sleep(DELAY)"].parent_span_id == root.span_id
    assert names[blocked_name].parent_span_id == names["GET /block"].span_id
    attributes = {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in root.attributes}
    assert attributes["http.route"] == "/items/{item_id}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.query"] == "q=1"
    assert root.events[0].name == "received"
    assert root.start_time_unix_nano < root.end_time_unix_nano
