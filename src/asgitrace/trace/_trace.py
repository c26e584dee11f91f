"""The finished record of one request: `Trace`, immutable, with its query helpers.

Capture's `Recorder` closes a trace into a record (a marshalled tuple of atoms, see
`Trace.of_record`); the events' details stay raw until a view first reads `Trace.events`,
which decodes them through `asgitrace.trace.codec`.
"""

from __future__ import annotations

import enum
import marshal
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, final

from .._support import safe_repr
from ._events import TERMINAL_KINDS, Event, EventKind, TaskRef
from ._match import Step, find_order
from .codec import Work, decode, ends_response, expand

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["SCHEMA_VERSION", "RawEvent", "Trace", "request_label"]

SCHEMA_VERSION: Final = 1
"""Version of the dictionary layout `Trace.to_dict` produces."""

RawEvent = tuple[int, int, str, int, str, Any]
"""What the hot path appends: seq, t_ns, kind, task id, task name and the fields.

Only atoms (ints, strings, code objects, ...) and atom-only dicts and tuples go in, so
that the garbage collector stops tracking a stored trace after one pass: a ring of
finished traces must not make every full collection slower (that showed as p99
latency). The fields are a dict, or a raw tuple whose first item names its layout,
decoded by `asgitrace.trace.codec.decode` when a view first reads `Trace.events`.
"""

_KIND_OF: Final = {kind.value: kind for kind in EventKind}
_NO_WORK: Final[Work] = {}


def _text_pairs(pairs: tuple[tuple[Any, Any], ...]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (
            k.decode("latin-1") if isinstance(k, bytes) else str(k),
            v.decode("latin-1") if isinstance(v, bytes) else str(v),
        )
        for k, v in pairs
    )


@final
class Trace:
    """Everything asgitrace recorded about one request, immutable once finished.

    Attributes:
        id: Hex id, unique across processes (a random per-process prefix and a counter).
        type: The ASGI scope type, ``"http"`` or ``"websocket"``.
        method: The HTTP method (``None`` for WebSockets).
        path: The request path.
        route: The route template that matched (``"/items/{item_id}"``), when known.
        query: The query string, with secret parameters redacted.
        headers: Request headers as text pairs, with secret values redacted.
        response_headers: Response headers as text pairs, with secret values redacted.
        status: The HTTP status sent, or ``None`` when no response started.
        start: Wall-clock time of arrival (seconds since the epoch).
        start_ns: Clock reading at arrival (the tracer's clock, nanoseconds).
        end_ns: Clock reading at the end.
        dropped: How many events did not fit under ``Tracer(max_events=...)``.
        raw_events: The events as recorded (details not yet resolved; each suspension's
            compact record expanded into its two events on first use).

    .. versionadded:: 0.1
    """

    # A plain slotted class rather than a frozen dataclass: building one is on every
    # request's path, and frozen dataclasses pay an object.__setattr__ per field.
    __slots__ = (
        "_context",
        "_expanded",
        "_headers",
        "_raw",
        "_resolved",
        "_response_headers",
        "dropped",
        "end_ns",
        "id",
        "method",
        "path",
        "query",
        "route",
        "start",
        "start_ns",
        "status",
        "type",
    )

    def __init__(
        self,
        *,
        id: str,
        type: str,
        method: str | None,
        path: str,
        route: str | None,
        query: str,
        headers: tuple[tuple[Any, Any], ...],
        response_headers: tuple[tuple[Any, Any], ...],
        status: int | None,
        start: float,
        start_ns: int,
        end_ns: int,
        dropped: int,
        raw_events: tuple[RawEvent, ...],
        context: Work | None = None,
    ) -> None:
        self.id = id
        self.type = type
        self.method = method
        self.path = path
        self.route = route
        self.query = query
        self._headers = headers
        self._response_headers = response_headers
        self.status = status
        self.start = start
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.dropped = dropped
        self._raw = raw_events
        self._expanded: tuple[RawEvent, ...] | None = None
        self._context = context
        self._resolved: tuple[Event, ...] | None = None

    @classmethod
    def of_record(cls, record: bytes | tuple[Any, ...]) -> Trace:
        """The trace of a record `Recorder.close` made (the form a `Tracer` stores)."""
        data: Any = marshal.loads(record) if type(record) is bytes else record  # our own bytes
        (id_, type_, method, path, route, query, headers, response_headers, status, start,
         start_ns, end_ns, dropped, raw_events, work) = data  # fmt: skip
        return cls(
            id=id_,
            type=type_,
            method=method,
            path=path,
            route=route,
            query=query,
            headers=headers,
            response_headers=response_headers,
            status=status,
            start=start,
            start_ns=start_ns,
            end_ns=end_ns,
            dropped=dropped,
            raw_events=raw_events,
            context=dict(work) if work else None,
        )

    def _key(self) -> tuple[Any, ...]:
        return (
            self.id, self.type, self.method, self.path, self.route, self.query, self._headers,
            self._response_headers, self.status, self.start, self.start_ns, self.end_ns,
            self.dropped, self.raw_events,
        )  # fmt: skip

    def __eq__(self, other: object) -> bool:
        # A trace is a value: the views of one record (`Tracer.traces` builds new ones
        # at each call) are equal.
        if not isinstance(other, Trace):
            return NotImplemented
        return self is other or self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return (
            f"<Trace {self.id} {self.method or self.type} {self.path} status={self.status}"
            f" outcome={self.outcome} events={len(self.raw_events)}>"
        )

    @property
    def raw_events(self) -> tuple[RawEvent, ...]:
        """The events as recorded, details not yet resolved (computed once)."""
        expanded = self._expanded
        if expanded is None:
            expanded = self._expanded = expand(self._raw)
        return expanded

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Request headers as text pairs (latin-1), secret values redacted."""
        return _text_pairs(self._headers)

    @property
    def response_headers(self) -> tuple[tuple[str, str], ...]:
        """Response headers as text pairs (latin-1), secret values redacted."""
        return _text_pairs(self._response_headers)

    @property
    def duration_ns(self) -> int:
        """Time from arrival to the terminal event, in nanoseconds."""
        return self.end_ns - self.start_ns

    @property
    def duration(self) -> float:
        """Time from arrival to the terminal event, in seconds."""
        return self.duration_ns / 1e9

    @property
    def events(self) -> tuple[Event, ...]:
        """The events in order, with their details resolved (computed once, on first use)."""
        resolved = self._resolved
        if resolved is None:
            tasks: dict[int, TaskRef] = {}
            context = self._context or _NO_WORK
            resolved = self._resolved = tuple(
                Event(
                    s,
                    t,
                    _KIND_OF[k],
                    tasks.get(tid) or tasks.setdefault(tid, TaskRef(tid, tname)),
                    decode(f, context),
                )
                for s, t, k, tid, tname, f in self.raw_events
            )
        return resolved

    @property
    def kinds(self) -> tuple[EventKind, ...]:
        """The kind of every event, in order."""
        return tuple(_KIND_OF[e[2]] for e in self.raw_events)

    @property
    def outcome(self) -> str:
        """How the request ended: ``completed``, ``failed``, ``cancelled`` or ``disconnected``.

        ``disconnected`` means the client went away before the response was complete
        while the app itself returned normally.
        """
        last = self._raw[-1][2]  # the terminal event: never a compact record
        if last != "completed":
            return last
        body_done = False
        for _, _, kind, _, _, fields in self.raw_events:
            if kind == "sent":
                body_done = body_done or ends_response(decode(fields))
            elif kind == "disconnected" and not body_done:
                return "disconnected"
        return "completed"

    @property
    def exception(self) -> str | None:
        """The name of the exception type the app raised, if it failed."""
        exception = self.events[-1].get("exception")
        return None if exception is None else str(exception)

    @property
    def task(self) -> TaskRef:
        """The task that served the request."""
        last = self._raw[-1]
        return TaskRef(last[3], last[4])

    def of_kind(self, *kinds: str | EventKind) -> tuple[Event, ...]:
        """Return the events of the given kinds, in order."""
        wanted = {str(k) for k in kinds}
        return tuple(e for e in self.events if e.kind.value in wanted)

    def awaits(self) -> tuple[Event, ...]:
        """Return the ``awaiting`` events: where the request's code suspended, and on what."""
        return self.of_kind(EventKind.AWAITING)

    def blocking(self) -> tuple[Event, ...]:
        """Return the ``blocked`` events: steps that held the event loop too long."""
        return self.of_kind(EventKind.BLOCKED)

    def assert_order(self, *steps: Step, exact: bool = False) -> None:
        """Assert that the events happened in this order.

        Args:
            steps: Kinds (``"received"``), kinds with a text to find in the event's
                fields (``("awaiting", "asyncio.sleep")``), or sets of those for steps
                that may happen in any order.
            exact: Require exactly these events, not just this subsequence.

        Raises:
            TraceOrderError: naming the expected steps, the actual kinds and the first
                step that did not match.
        """
        __tracebackhide__ = True
        find_order(self.events, steps, exact=exact)

    def to_dict(self) -> dict[str, Any]:
        """Return the trace as JSON-ready data (see the schema in the docs)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "type": self.type,
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "query": self.query,
            "headers": [list(h) for h in self.headers],
            "response_headers": [list(h) for h in self.response_headers],
            "status": self.status,
            "outcome": self.outcome,
            "start": self.start,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "duration_ns": self.duration_ns,
            "dropped": self.dropped,
            "events": [
                {
                    "seq": e.seq,
                    "t_ns": e.t_ns,
                    "kind": e.kind.value,
                    "task": {"id": e.task.id, "name": e.task.name},
                    "fields": {k: _jsonable(v) for k, v in e.fields.items()},
                }
                for e in self.events
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trace:
        """Rebuild a trace from `to_dict` output.

        Raises:
            ValueError: the data has another ``schema_version`` or misses a field.
        """
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported trace schema_version {version!r} (expected 1)")
        try:
            raw: tuple[RawEvent, ...] = tuple(
                (
                    int(e["seq"]),
                    int(e["t_ns"]),
                    EventKind(e["kind"]).value,
                    int(e["task"]["id"]),
                    str(e["task"]["name"]),
                    _unjson_fields(e["fields"]),
                )
                for e in data["events"]
            )
            if not raw or raw[-1][2] not in TERMINAL_KINDS:
                raise ValueError(
                    "not a finished trace: the last event must be completed, failed or cancelled"
                )
            return cls(
                id=str(data["id"]),
                type=str(data["type"]),
                method=data["method"],
                path=str(data["path"]),
                route=data["route"],
                query=str(data["query"]),
                headers=tuple((str(k), str(v)) for k, v in data["headers"]),
                response_headers=tuple((str(k), str(v)) for k, v in data["response_headers"]),
                status=data["status"],
                start=float(data["start"]),
                start_ns=int(data["start_ns"]),
                end_ns=int(data["end_ns"]),
                dropped=int(data["dropped"]),
                raw_events=raw,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a trace dictionary: {exc!r}") from exc

    def __rich__(self) -> RenderableType:
        from ..views import render_trace  # rich is imported only when a trace is rendered

        return render_trace(self)


def request_label(trace: Trace) -> str:
    """What a view calls the request's kind: its HTTP method, or ``WEBSOCKET``."""
    return trace.method or trace.type.upper()


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, TaskRef):
        return {"id": value.id, "name": value.name}
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    return safe_repr(value)


_TASK_FIELDS: Final = frozenset({"parent"})
"""Fields that hold a task reference (written as ``{"id", "name"}``); only these are read
back as `TaskRef`, so a watched variable called ``id`` or ``name`` stays what it was."""


def _unjson_fields(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _TASK_FIELDS and isinstance(value, Mapping) and set(value) == {"id", "name"}:
            out[key] = TaskRef(int(value["id"]), str(value["name"]))
        elif isinstance(value, list):
            out[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        else:
            out[key] = value
    return out
