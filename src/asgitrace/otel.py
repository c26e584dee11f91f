"""Traces as OpenTelemetry spans: the ``asgitrace[otel]`` extra.

`OTelExporter` is an ``on_trace`` callback. For each finished trace it emits

* a span for the request (kind ``SERVER``, named ``GET /items/{item_id}`` after the
  route template when known), with OpenTelemetry's HTTP attributes
  (``http.request.method``, ``url.path``, ``url.query``, ``http.route``,
  ``http.response.status_code``) and ``asgitrace.*`` attributes for the rest;
  messages received and sent, the endpoint's start and the end are its span events;
* a child span per child task (``task child``), from ``spawned`` to ``task_done``;
* a child span per wait (``await asyncio.sleep(1)``), under the task that waited,
  from the suspension to the resume, and per step that blocked the loop
  (``blocked time.sleep(1)``); their code location is in ``code.function``,
  ``code.filepath`` and ``code.lineno``.

When OpenTelemetry's own ASGI instrumentation serves the same request, the request
span is not a second root: it becomes an ``INTERNAL`` span named ``asgitrace GET ...``
under the instrumentation's server span (see `OTelExporter.wrap`). Otherwise a
``traceparent`` header the request carried makes it join the caller's trace.

Only users who opt in import this module; ``import asgitrace`` does not.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast, final

from opentelemetry import context as otel_context, trace as otel_trace
from opentelemetry.propagate import extract
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    set_span_in_context,
)

from ._support import log_failure
from ._version import __version__
from .capture import CURRENT, task_ref
from .export import Offload as _Offload  # the shared worker (public in export)
from .trace import EventKind, request_label

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from ._support import ASGIApp, Receive, Scope, Send
    from .capture import Tracer
    from .trace import Event, Trace

__all__ = ["OTelExporter", "instrument_otel"]

_Job: TypeAlias = "tuple[Trace, Context | None]"

_CODE_KEYS: Final = {"function": "code.function", "file": "code.filepath", "line": "code.lineno"}
_SPAN_EVENTS: Final = frozenset(
    {
        EventKind.RECEIVED,
        EventKind.SENT,
        EventKind.DISCONNECTED,
        EventKind.ENTERED,
        EventKind.RETURNED,
        EventKind.COMPLETED,
        EventKind.FAILED,
        EventKind.CANCELLED,
    }
)


@final
class OTelExporter:
    """An ``on_trace`` callback that turns each finished trace into OpenTelemetry spans.

    ``Tracer(on_trace=OTelExporter())`` sends spans through the global tracer provider
    (``opentelemetry.trace.set_tracer_provider``), or through the one given. Times are
    the trace's own: its wall-clock arrival plus the monotonic offsets of its events.

    Making spans costs the OpenTelemetry SDK tens of microseconds each, so by default
    the callback only notes the request's parent span and queues the trace
    (``put_nowait``, like `asgitrace.exporters.JsonlSink`); a daemon thread makes the
    spans. When the queue is full the trace is dropped and counted in `dropped`. `flush`
    waits for the queue, `close` (also run at interpreter exit) empties it and stops the
    thread. Give the provider a ``BatchSpanProcessor``, so that spans leave by its own
    thread.

    Args:
        tracer_provider: Where spans go; the global provider when omitted.
        min_wait: Seconds; waits shorter than this get no span of their own (they are
            still counted in the request span's ``asgitrace.waits`` attribute).
        max_pending: How many requests `wrap` remembers a parent span for, at most,
            while their traces are not finished yet.
        background: Make the spans on a daemon thread; ``False`` makes them in the
            callback, on the event loop's thread.
        max_queue: How many traces may wait for the thread before new ones are dropped.

    Raises:
        ValueError: an option is out of range.

    .. versionadded:: 0.1
    """

    __slots__ = ("_lock", "_max_pending", "_min_wait_ns", "_pending", "_tracer", "_worker")

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        *,
        min_wait: float = 0.0,
        max_pending: int = 10_000,
        background: bool = True,
        max_queue: int = 10_000,
    ) -> None:
        if min_wait < 0:
            raise ValueError(f"min_wait must be >= 0 seconds, got {min_wait!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending!r}")
        self._tracer = otel_trace.get_tracer("asgitrace", __version__, tracer_provider)
        self._min_wait_ns = int(min_wait * 1e9)
        self._max_pending = max_pending
        self._pending: OrderedDict[int, tuple[SpanContext, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._worker: _Offload[_Job] | None = (
            _Offload("asgitrace-otel", self._export, max_queue=max_queue) if background else None
        )

    @property
    def exported(self) -> int:
        """How many traces became spans so far (in the background: made, maybe not sent)."""
        return self._worker.done if self._worker is not None else 0

    @property
    def dropped(self) -> int:
        """How many traces were not exported: queue full, exporter closed or a failure."""
        return self._worker.dropped if self._worker is not None else 0

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the traces queued before this call are spans (then, to send them
        now, call the provider's ``force_flush``).

        Args:
            timeout: Seconds to wait at most (``None``: as long as it takes).

        Returns:
            Whether they were all done in time.
        """
        return self._worker.flush(timeout) if self._worker is not None else True

    def close(self, timeout: float | None = 10.0) -> None:
        """Turn what is queued into spans, then stop the thread; later traces are dropped.

        Args:
            timeout: Seconds to wait at most.
        """
        if self._worker is not None:
            self._worker.close(timeout)

    def __repr__(self) -> str:
        return (
            f"<OTelExporter pending={len(self._pending)} exported={self.exported}"
            f" dropped={self.dropped}>"
        )

    # -- attaching to OpenTelemetry's ASGI instrumentation --------------------------------

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Wrap *app* so that its traces attach to OpenTelemetry's server span.

        OpenTelemetry's ASGI middleware makes its server span current only while the
        request runs. When asgitrace's middleware runs *inside* it, the exporter finds
        that span by itself and `wrap` is not needed. When asgitrace's middleware is
        *outside* it (added last with ``app.add_middleware``, as asgitrace's docs
        recommend), its traces finish after that span has ended: put the middleware
        `wrap` returns *inside* OpenTelemetry's, where it notes the server span of each
        request. Starlette runs the middleware added last first::

            app.add_middleware(exporter.wrap)  # innermost of the three
            app.add_middleware(OpenTelemetryMiddleware)
            app.add_middleware(TraceMiddleware, tracer=tracer)  # outermost

        or, wrapping by hand, from the outside in::

            app = OpenTelemetryMiddleware(exporter.wrap(TraceMiddleware(app, tracer=tracer)))

        The wrapper passes every message through untouched and remembers at most
        ``max_pending`` parents (the oldest go first). All three must run in the same
        task: no ``BaseHTTPMiddleware`` between them.

        Args:
            app: The ASGI app that asgitrace's middleware wraps, or that middleware.

        Returns:
            A pure ASGI app.
        """
        return _ParentCapture(app, self)

    def _remember(self, scope: Scope) -> tuple[int, bool] | None:
        span_context = otel_trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        rec = CURRENT.get()
        # Inside asgitrace's middleware the recorder names the request's task; outside
        # it, this is the task the middleware will run in, and the same id.
        key = rec.task.id if rec is not None else task_ref(asyncio.current_task()).id
        with self._lock:
            self._pending[key] = (span_context, str(scope.get("path", "")))
            self._pending.move_to_end(key)
            while len(self._pending) > self._max_pending:
                self._pending.popitem(last=False)
        return key, rec is None

    def _forget(self, key: int) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def _instrumented(self, trace: Trace) -> Context | None:
        """The context of an instrumentation's span around the request, if there is one.

        Runs in the ``on_trace`` callback, hence in the request's own context.
        """
        with self._lock:
            captured = self._pending.pop(trace.task.id, None)
        if captured is not None and captured[1] == trace.path:
            return set_span_in_context(NonRecordingSpan(captured[0]))
        if otel_trace.get_current_span().get_span_context().is_valid:
            # An instrumentation (or the code that called the app in-process) has a span
            # open around the request.
            return otel_context.get_current()
        return None

    # -- the export -------------------------------------------------------------------------

    def __call__(self, trace: Trace) -> None:
        """Turn *trace* into spans, or queue it for the thread that does (``on_trace``)."""
        parent = self._instrumented(trace)  # here: it reads the request's context
        if self._worker is None:
            _Export(self, trace, parent).run()
        else:
            self._worker.submit((trace, parent))

    def _export(self, job: _Job) -> bool:
        _Export(self, *job).run()
        return True


class _Export:
    """The spans of one trace."""

    __slots__ = (
        "base",
        "exporter",
        "names",
        "open_waits",
        "parent",
        "root",
        "skipped",
        "tasks",
        "trace",
        "waits",
    )

    def __init__(self, exporter: OTelExporter, trace: Trace, parent: Context | None) -> None:
        self.exporter = exporter
        self.trace = trace
        self.parent = parent
        self.base = round(trace.start * 1e9) - trace.start_ns
        self.tasks: dict[int, tuple[Span, Context]] = {}
        self.names: dict[int, str] = {}
        self.open_waits: dict[int, tuple[int, dict[str, Any]]] = {}
        self.waits = 0
        self.skipped = 0

    def ns(self, t_ns: int) -> int:
        """Epoch nanoseconds of a clock reading of this trace."""
        return t_ns + self.base

    def run(self) -> None:
        trace = self.trace
        tracer = self.exporter._tracer
        parent = self.parent
        attached = parent is not None
        if parent is None:
            # No instrumentation around it: a `traceparent` header may name the caller.
            carrier = {name.lower(): value for name, value in trace.headers}
            parent = extract(carrier, context=otel_context.Context())
        label = f"{request_label(trace)} {trace.route or trace.path}"
        self.root = root = tracer.start_span(
            f"asgitrace {label}" if attached else label,
            context=parent,
            kind=SpanKind.INTERNAL if attached else SpanKind.SERVER,
            attributes=_request_attributes(trace),
            start_time=self.ns(trace.start_ns),
        )
        self.tasks[trace.task.id] = (root, set_span_in_context(root))
        pending: dict[int, dict[str, Any]] = {}
        for event in trace.events:
            kind = event.kind
            task = event.task.id
            self.names[task] = event.task.name
            if kind is EventKind.AWAITING:
                pending[task] = dict(event.fields)
            elif kind is EventKind.YIELDED:
                self.open_waits[task] = (event.t_ns, pending.pop(task, {}))
            elif kind is EventKind.RESUMED:
                self.resumed(event)
            elif kind is EventKind.BLOCKED:
                self.blocked(event)
            elif kind is EventKind.SPAWNED:
                self.spawned(event)
            elif kind is EventKind.TASK_DONE:
                self.task_done(event)
            if kind in _SPAN_EVENTS:
                attributes = _attributes(event.fields, prefix="")
                if task != trace.task.id:
                    attributes["task"] = event.task.name
                root.add_event(kind.value, attributes, timestamp=self.ns(event.t_ns))
        end = self.ns(trace.end_ns)
        for task, (start, fields) in self.open_waits.items():
            self.wait(task, start, trace.end_ns, {**fields, "unfinished": True})
        for task, (span, _) in self.tasks.items():
            if task != trace.task.id:
                span.set_attribute("asgitrace.unfinished", True)
                span.end(end)
        root.set_attribute("asgitrace.waits", self.waits)
        if self.skipped:
            root.set_attribute("asgitrace.waits_skipped", self.skipped)
        _set_request_status(root, trace, attached)
        root.end(end)

    def context_of(self, task: int) -> Context:
        return self.tasks.get(task, self.tasks[self.trace.task.id])[1]

    def resumed(self, event: Event) -> None:
        opened = self.open_waits.pop(event.task.id, None)
        if opened is not None:
            start, fields = opened
            self.wait(event.task.id, start, event.t_ns, {**fields, **event.fields})

    def wait(self, task: int, start: int, end: int, fields: dict[str, Any]) -> None:
        self.waits += 1
        if end - start < self.exporter._min_wait_ns:
            self.skipped += 1
            return
        target = fields.get("target")
        attributes = _attributes(fields)
        attributes.update(self.task_attributes(task))
        span = self.exporter._tracer.start_span(
            f"await {target}" if target else "await",
            context=self.context_of(task),
            attributes=attributes,
            start_time=self.ns(start),
        )
        span.end(self.ns(end))

    def blocked(self, event: Event) -> None:
        fields = dict(event.fields)
        start = int(fields.pop("started_ns", event.t_ns))
        what = fields.get("code") or fields.get("function") or "step"
        attributes = _attributes(fields)
        attributes.update(self.task_attributes(event.task.id))
        span = self.exporter._tracer.start_span(
            f"blocked {what}",
            context=self.context_of(event.task.id),
            attributes=attributes,
            start_time=self.ns(start),
        )
        span.end(self.ns(start + int(fields.get("duration_ns", 0))))

    def spawned(self, event: Event) -> None:
        parent = event.get("parent")
        parent_id = getattr(parent, "id", self.trace.task.id)
        attributes = _attributes(event.fields)
        attributes["asgitrace.task.name"] = event.task.name
        attributes["asgitrace.task.id"] = event.task.id
        span = self.exporter._tracer.start_span(
            f"task {event.get('coro') or event.task.name}",
            context=self.context_of(parent_id),
            attributes=attributes,
            start_time=self.ns(event.t_ns),
        )
        self.tasks[event.task.id] = (span, set_span_in_context(span))

    def task_done(self, event: Event) -> None:
        if event.task.id == self.trace.task.id:
            return
        opened = self.tasks.pop(event.task.id, None)
        if opened is None:
            return
        span = opened[0]
        span.set_attributes(_attributes(event.fields, prefix="asgitrace.task."))
        if event.get("outcome") == "failed":
            span.set_status(Status(StatusCode.ERROR, str(event.get("exception", ""))))
        span.end(self.ns(event.t_ns))

    def task_attributes(self, task: int) -> dict[str, AttributeValue]:
        return {"asgitrace.task.id": task, "asgitrace.task.name": self.names.get(task, "")}


def _request_attributes(trace: Trace) -> dict[str, AttributeValue]:
    out: dict[str, AttributeValue] = {}
    if trace.method is not None:
        out["http.request.method"] = trace.method
    out["url.path"] = trace.path
    if trace.query:
        out["url.query"] = trace.query
    if trace.route:
        out["http.route"] = trace.route
    if trace.status is not None:
        out["http.response.status_code"] = trace.status
    first = trace.events[0]
    if first.get("http_version"):
        out["network.protocol.version"] = str(first.get("http_version"))
    for name, value in trace.headers:
        if name.lower() == "user-agent":
            out["user_agent.original"] = value
    out["asgitrace.trace_id"] = trace.id
    out["asgitrace.type"] = trace.type
    out["asgitrace.outcome"] = trace.outcome
    out["asgitrace.task.name"] = trace.task.name
    out["asgitrace.task.id"] = trace.task.id
    out["asgitrace.blocked"] = len(trace.blocking())
    out["asgitrace.dropped"] = trace.dropped
    if trace.exception is not None:
        out["error.type"] = trace.exception
    return out


def _set_request_status(span: Span, trace: Trace, attached: bool) -> None:
    if trace.exception is not None:
        span.set_status(Status(StatusCode.ERROR, trace.exception))
    elif not attached and trace.status is not None and trace.status >= 500:
        # HTTP conventions: a server span is an error for 5xx, not for 4xx.
        span.set_attribute("error.type", str(trace.status))
        span.set_status(Status(StatusCode.ERROR))


def _attributes(fields: Mapping[str, Any], prefix: str = "asgitrace.") -> dict[str, Any]:
    """Span attributes of event fields: code locations as ``code.*``, the rest prefixed."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if prefix and key in _CODE_KEYS:
            out[_CODE_KEYS[key]] = _value(value)
        elif isinstance(value, Mapping):
            for inner, item in value.items():
                if item is not None:
                    out[f"{prefix}{key}.{inner}"] = _value(item)
        else:
            out[prefix + key] = _value(value)
    return out


def _value(value: Any) -> AttributeValue:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a TaskRef
        return str(getattr(value, "name", value))
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in value)
    return str(value)


@final
class _ParentCapture:
    """The pure ASGI middleware `OTelExporter.wrap` returns."""

    __slots__ = ("app", "exporter")

    def __init__(self, app: ASGIApp, exporter: OTelExporter) -> None:
        self.app = app
        self.exporter = exporter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        try:
            key = self.exporter._remember(scope)
        except Exception as exc:
            log_failure("OTelExporter.wrap", exc)
            key = None
        try:
            await self.app(scope, receive, send)
        finally:
            if key is not None and key[1]:
                # Outside asgitrace's middleware: its trace has been handed over by now.
                self.exporter._forget(key[0])


def instrument_otel(
    app: ASGIApp,
    tracer: Tracer | None = None,
    *,
    exporter: OTelExporter | None = None,
    tracer_provider: TracerProvider | None = None,
) -> ASGIApp:
    """Wrap *app* with OpenTelemetry's ASGI middleware and asgitrace's, in the right order.

    Equivalent to::

        exporter = OTelExporter(tracer_provider)
        tracer.add_callback(exporter)
        app = OpenTelemetryMiddleware(
            exporter.wrap(TraceMiddleware(app, tracer=tracer)), tracer_provider=tracer_provider
        )

    Needs ``opentelemetry-instrumentation-asgi``.

    Args:
        app: The ASGI app.
        tracer: The asgitrace tracer; a new `asgitrace.Tracer` when omitted (then reach
            it as ``TraceMiddleware.tracer`` or pass your own to read traces back).
        exporter: The exporter to add to *tracer*; a new one when omitted.
        tracer_provider: OpenTelemetry's tracer provider for both; the global one when
            omitted.

    Returns:
        The wrapped app.

    Raises:
        ImportError: ``opentelemetry-instrumentation-asgi`` is not installed.

    .. versionadded:: 0.1
    """
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "instrument_otel() needs OpenTelemetry's ASGI instrumentation: "
            "pip install opentelemetry-instrumentation-asgi"
        ) from exc
    from .capture import TraceMiddleware

    traced = TraceMiddleware(app) if tracer is None else TraceMiddleware(app, tracer=tracer)
    exporter = exporter if exporter is not None else OTelExporter(tracer_provider)
    traced.tracer.add_callback(exporter)
    wrapped = OpenTelemetryMiddleware(exporter.wrap(traced), tracer_provider=tracer_provider)
    return cast("ASGIApp", wrapped)
