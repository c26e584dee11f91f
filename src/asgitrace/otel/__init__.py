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
import contextlib
from collections import OrderedDict
from typing import TYPE_CHECKING, TypeAlias, cast, final

from opentelemetry import context as otel_context, trace as otel_trace
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    set_span_in_context,
)

from .._support import log_failure
from .._version import __version__
from ..capture import CURRENT, task_ref
from ..export import Offload as _Offload  # the shared worker (public in export)
from ._spans import TraceSpans as _Export

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import TracerProvider

    from .._support import ASGIApp, Receive, Scope, Send
    from ..capture import Tracer
    from ..trace import Trace

__all__ = ["OTelExporter", "instrument_otel"]

_Job: TypeAlias = "tuple[Trace, Context | None]"


@final
class OTelExporter:
    """An ``on_trace`` callback that turns each finished trace into OpenTelemetry spans.

    ``Tracer(on_trace=OTelExporter())`` sends spans through the global tracer provider
    (``opentelemetry.trace.set_tracer_provider``), or through the one given. Times are
    the trace's own: its wall-clock arrival plus the monotonic offsets of its events.

    Making spans costs the OpenTelemetry SDK tens of microseconds each, so by default
    the callback only notes the request's parent span and queues the trace
    (a lock-free append, like `asgitrace.exporters.JsonlSink`); a daemon thread makes the
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

    __slots__ = ("_max_pending", "_min_wait_ns", "_pending", "_tracer", "_worker")

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
        # No lock (the loop thread must never wait for one): each OrderedDict operation
        # is atomic, and a race between threads only moves which old entry goes first.
        pending = self._pending
        pending[key] = (span_context, str(scope.get("path", "")))
        with contextlib.suppress(KeyError):
            pending.move_to_end(key)
            while len(pending) > self._max_pending:
                pending.popitem(last=False)
        return key, rec is None

    def _forget(self, key: int) -> None:
        self._pending.pop(key, None)

    def _instrumented(self, trace: Trace) -> Context | None:
        """The context of an instrumentation's span around the request, if there is one.

        Runs in the ``on_trace`` callback, hence in the request's own context.
        """
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
    from ..capture import TraceMiddleware

    traced = TraceMiddleware(app) if tracer is None else TraceMiddleware(app, tracer=tracer)
    exporter = exporter if exporter is not None else OTelExporter(tracer_provider)
    traced.tracer.add_callback(exporter)
    wrapped = OpenTelemetryMiddleware(exporter.wrap(traced), tracer_provider=tracer_provider)
    return cast("ASGIApp", wrapped)
