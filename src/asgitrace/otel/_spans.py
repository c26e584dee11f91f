"""The spans of one finished trace: the request, its child tasks, its waits and its blocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, final

from opentelemetry import context as otel_context, trace as otel_trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from ..trace import EventKind, request_label

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from ..trace import Event, Trace

__all__ = ["SpanSource", "TraceSpans"]


class SpanSource(Protocol):
    """What the spans of a trace take from their `asgitrace.otel.OTelExporter`."""

    _tracer: otel_trace.Tracer
    _min_wait_ns: int


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
class TraceSpans:
    """The spans of one trace, made on the exporter's worker thread."""

    __slots__ = (
        "base",
        "min_wait_ns",
        "names",
        "open_waits",
        "parent",
        "root",
        "skipped",
        "tasks",
        "trace",
        "tracer",
        "waits",
    )

    def __init__(self, exporter: SpanSource, trace: Trace, parent: Context | None) -> None:
        self.tracer = exporter._tracer
        self.min_wait_ns = exporter._min_wait_ns
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
        tracer = self.tracer
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
        if end - start < self.min_wait_ns:
            self.skipped += 1
            return
        target = fields.get("target")
        attributes = _attributes(fields)
        attributes.update(self.task_attributes(task))
        span = self.tracer.start_span(
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
        span = self.tracer.start_span(
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
        span = self.tracer.start_span(
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
