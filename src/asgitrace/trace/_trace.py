"""The trace model: `Recorder` collects a request's events, `Trace` is the finished record."""

from __future__ import annotations

import enum
import itertools
import marshal
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from types import CodeType, MappingProxyType
from typing import TYPE_CHECKING, Any, Final, final

from .._support._log import log_failure
from .._support._safe import safe_repr
from ..capture._context import new_task_ref
from ._events import Event, EventKind, TaskRef
from ._match import Step, find_order

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ..capture._tracer import Tracer

__all__ = [
    "CONTEXTS",
    "RESOLVERS",
    "SCHEMA_VERSION",
    "RawEvent",
    "Recorder",
    "Resolver",
    "Trace",
    "end_fields",
    "ends_response",
    "message_fields",
    "pairs_of",
]

SCHEMA_VERSION: Final = 1
"""Version of the dictionary layout `Trace.to_dict` produces."""

_seq = itertools.count(1)
# Trace ids: a random per-process prefix and a counter. Unique across processes without
# a random draw per request (os.urandom is a system call, ~9 µs on some VMs).
_ID_PREFIX = os.urandom(5).hex()
_ids = itertools.count(1)

RawEvent = tuple[int, int, str, int, str, Any]
"""What the hot path appends: seq, t_ns, kind, task id, task name and the fields.

Only atoms (ints, strings, code objects, ...) and atom-only dicts and tuples go in, so
that the garbage collector stops tracking a stored trace after one pass: a ring of
finished traces must not make every full collection slower (that showed as p99
latency). The fields are a dict, or a tuple ``(resolver, *raw)`` resolved by
``RESOLVERS[resolver]`` when a view first reads `Trace.events`.
"""

Resolver = Callable[[tuple[Any, ...], Any], Mapping[str, Any]]
"""Turns lazy raw fields (and the trace's capture context) into the event's fields."""

RESOLVERS: dict[str, Resolver] = {}
"""Registered by the capture modules: the key is the first item of the lazy tuple."""

MAX_CODES: Final = 1 << 16
"""How many distinct code objects records can name (`code_id`); past that, 0 (unknown)."""

_codes: list[CodeType | None] = [None]  # never shrinks: keeps every named code alive
# Keyed by id(code), not by the code object: hashing a code object hashes its constants,
# nested functions' code included, on every lookup (measured 1.2 µs for FastAPI's request
# handler). The ids are stable: `_codes` keeps each code object alive.
_code_ids: dict[int, int] = {}
_codes_lock = threading.Lock()


def code_id(code: CodeType | None) -> int:
    """A small int naming *code* in raw fields (0 for none): records stay marshallable."""
    if code is None:
        return 0
    index = _code_ids.get(id(code))
    if index is None:
        with _codes_lock:
            index = _code_ids.get(id(code))
            if index is None:
                if len(_codes) >= MAX_CODES:
                    return 0
                index = len(_codes)
                _codes.append(code)
                _code_ids[id(code)] = index
    return index


def code_of(index: int) -> CodeType | None:
    """The code object `code_id` named *index* (``None`` for 0 or an unknown index)."""
    return _codes[index] if 0 < index < len(_codes) else None


CONTEXTS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
"""Capture contexts (loop monitors) by key: a record names its context by an int, not a
reference, so that it stays a tuple of atoms."""

# Keyed by the enum members, which hash and compare as their values: plain strings
# ("sent") find their entry too.
_KIND_TEXT: Final[dict[EventKind | str, str]] = {kind: kind.value for kind in EventKind}
_KIND_OF: Final = {kind.value: kind for kind in EventKind}
_TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})


def _resolve(fields: Any, context: Any) -> Mapping[str, Any]:
    if type(fields) is tuple:
        try:
            return MappingProxyType(dict(RESOLVERS[fields[0]](fields, context)))
        except Exception as exc:
            log_failure("resolving event details", exc)
            return MappingProxyType({"unresolved": str(fields[0])})
    return MappingProxyType(dict(fields))


MAX_TEXT: Final = 2048
"""Characters kept of a path, query string or method (they come from clients)."""


def _cut(text: str) -> str:
    return text[:MAX_TEXT] + f"…(+{len(text) - MAX_TEXT} chars)"


def _text(value: Any) -> str:
    """A client-supplied scope value as bounded text (JSON-ready whatever its type)."""
    if type(value) is not str:
        value = safe_repr(value)
    return value if len(value) <= MAX_TEXT else _cut(value)


def _route_of(route: Any) -> str | None:
    path = getattr(route, "path", None) if route is not None else None
    return None if path is None else _text(path)


@final
class Recorder:
    """Collects the events of one request while it runs (mutable, request-local).

    The hot path is `add`: read the clock, append a tuple. It is capped at *limit* events;
    what does not fit is counted in `dropped`. The terminal event always fits.
    """

    __slots__ = (
        "blocking_ns",
        "clock",
        "dropped",
        "endpoint_code",
        "entered",
        "events",
        "headers",
        "is_app",
        "limit",
        "method",
        "mon",
        "path",
        "query",
        "redactor",
        "response_done",
        "response_headers",
        "returned",
        "scope",
        "start_ns",
        "start_wall",
        "status",
        "task",
        "task_obj",
        "tracer",
        "type",
        "watcher",
    )

    def __init__(self, tracer: Tracer, scope: Mapping[str, Any], task: Any = None) -> None:
        # The per-request path: plain attribute stores, no keyword plumbing.
        self.scope = scope
        self.tracer = tracer
        self.task_obj = task
        self.task = new_task_ref(task.get_name() if task is not None else "<no task>")
        self.mon: Any = None
        self.type: str = _text(scope.get("type"))
        method = scope.get("method")
        self.method: str | None = None if method is None else _text(method)
        self.path: str = _text(scope.get("path", ""))
        redactor = self.redactor = tracer.redactor
        self.headers = redactor.raw_headers_of(scope.get("headers"))
        query = scope.get("query_string")
        self.query = _text(redactor.query_of(query)) if query else ""
        self.clock = clock = tracer.clock
        self.limit = tracer.max_events
        self.blocking_ns = tracer.blocking_ns
        self.is_app = tracer.app_code
        self.watcher = tracer.watcher
        self.events: list[RawEvent] = []
        self.dropped = 0
        self.status: int | None = None
        self.response_headers: tuple[tuple[Any, Any], ...] = ()
        self.response_done = False
        self.entered = False
        self.returned = False
        self.endpoint_code: Any = None
        self.start_wall = time.time()
        self.start_ns = clock()

    def add(self, kind: EventKind | str, fields: Any, task: TaskRef | None = None) -> None:
        """Record one event now (in *task*, by default the request's own task).

        *fields* is a dict of atoms, or a lazy tuple (see `RawEvent`).
        """
        if len(self.events) < self.limit:
            task = task or self.task
            self.events.append(
                (next(_seq), self.clock(), _KIND_TEXT[kind], task.id, task.name, fields)
            )
        else:
            self.dropped += 1

    def close(self, kind: EventKind | str, fields: Any) -> bytes | tuple[Any, ...]:
        """Close the trace with a terminal event and hand its record to the tracer.

        *fields* as for `add`. The record is the trace's data as a tuple of atoms,
        marshalled (see `Trace.of_record`): a ring of them costs the garbage collector
        nothing, where a ring of objects would make it run full collections (tens of
        milliseconds each) every few seconds under load.
        """
        if self.events is _NO_EVENTS:
            raise RuntimeError("this trace is already closed")
        end = self.clock()
        task = self.task
        self.events.append((next(_seq), end, _KIND_TEXT[kind], task.id, task.name, fields))
        mon = self.mon
        record = (
            f"{_ID_PREFIX}{next(_ids):06x}", self.type, self.method, self.path,
            _route_of(self.scope.get("route")), self.query, self.headers, self.response_headers,
            self.status, self.start_wall, self.start_ns, end, self.dropped, tuple(self.events),
            0 if mon is None else mon.key,
        )  # fmt: skip
        # Late events (tasks that outlive the request) are not kept. And a closed recorder
        # lets go of the request: contexts copied during it (the server's keep-alive
        # timer, cancelled but left in the loop's heap for a while) still name it, and
        # through the scope they would keep the request's whole object graph alive long
        # enough to reach the old generations of the garbage collector.
        self.limit = 0
        self.events = _NO_EVENTS
        self.task_obj = None
        self.scope = _NO_SCOPE
        self.headers = self.response_headers = ()
        try:
            # One bytes object: nothing for the garbage collector to track or count,
            # and ~4x smaller than the tuples (the raw fields hold only atoms).
            stored: bytes | tuple[Any, ...] = marshal.dumps(record)
        except ValueError:  # fields a caller of `add` gave that marshal cannot write
            stored = record
        self.tracer.finished(stored, end - self.start_ns)
        return stored

    def finish(self, kind: EventKind | str, fields: Any) -> Trace:
        """`close`, and return the finished trace."""
        return Trace.of_record(self.close(kind, fields))


_NO_EVENTS: Final[list[RawEvent]] = []  # a closed recorder's (never appended to: limit 0)
_NO_SCOPE: Final[Mapping[str, Any]] = MappingProxyType({})


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
        raw_events: The events as recorded (details not yet resolved).

    .. versionadded:: 0.1
    """

    # A plain slotted class rather than a frozen dataclass: building one is on every
    # request's path, and frozen dataclasses pay an object.__setattr__ per field.
    __slots__ = (
        "_context",
        "_headers",
        "_resolved",
        "_response_headers",
        "dropped",
        "end_ns",
        "id",
        "method",
        "path",
        "query",
        "raw_events",
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
        context: Any = None,
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
        self.raw_events = raw_events
        self._context = context
        self._resolved: tuple[Event, ...] | None = None

    @classmethod
    def of_record(cls, record: bytes | tuple[Any, ...]) -> Trace:
        """The trace of a record `Recorder.close` made (the form a `Tracer` stores)."""
        data: Any = marshal.loads(record) if type(record) is bytes else record  # our own bytes
        (id_, type_, method, path, route, query, headers, response_headers, status, start,
         start_ns, end_ns, dropped, raw_events, context) = data  # fmt: skip
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
            context=CONTEXTS.get(context) if context else None,
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
            context = self._context
            resolved = self._resolved = tuple(
                Event(
                    s,
                    t,
                    _KIND_OF[k],
                    tasks.get(tid) or tasks.setdefault(tid, TaskRef(tid, tname)),
                    _resolve(f, context),
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
        last = self.raw_events[-1][2]
        if last != "completed":
            return last
        body_done = False
        for _, _, kind, _, _, fields in self.raw_events:
            if kind == "sent":
                body_done = body_done or ends_response(_resolve(fields, None))
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
        last = self.raw_events[-1]
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
            if not raw or raw[-1][2] not in _TERMINAL:
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
        from ..views._render import render_trace  # rich is imported only when a trace is rendered

        return render_trace(self)


def ends_response(fields: Mapping[str, Any]) -> bool:
    """Whether a ``sent`` message's fields complete the response (the last body, a close)."""
    kind = fields.get("type")
    if kind in ("http.response.body", "websocket.http.response.body"):
        return not fields.get("more_body", False)
    return bool(kind == "websocket.close")


def message_fields(message: Mapping[str, Any]) -> tuple[Any, ...]:
    """The sizes and flags of an ASGI message, never its body, as lazy raw fields.

    ``("msg", type, body_bytes, more_body, text_chars, status, content_type, code)``;
    `None` for what the message does not have (see `_resolve_message`).
    """
    kind = message["type"]
    if "body" in message:
        return ("msg", kind, len(message["body"]), bool(message.get("more_body", False)),
                None, None, None, None)  # fmt: skip
    data = message.get("bytes")
    if data is not None:
        return ("msg", kind, len(data), None, None, None, None, None)
    text = message.get("text")
    if text is not None:
        return ("msg", kind, None, None, len(text), None, None, None)
    return ("msg", kind, None, None, None, None, None, None)


_MESSAGE_KEYS: Final = ("type", "body_bytes", "more_body", "text_chars", "status",
                        "content_type", "code")  # fmt: skip


def _resolve_message(raw: tuple[Any, ...], context: Any) -> Mapping[str, Any]:
    pairs = zip(_MESSAGE_KEYS, raw[1:], strict=True)
    return {key: value for key, value in pairs if value is not None}


def _resolve_open(raw: tuple[Any, ...], context: Any) -> Mapping[str, Any]:
    _, kind, path, method, http_version = raw
    fields = {"type": kind, "path": path}
    if method is not None:
        fields["method"] = method
    if http_version is not None:
        fields["http_version"] = http_version
    return fields


def _resolve_entered(raw: tuple[Any, ...], context: Any) -> Mapping[str, Any]:
    _, code_index, derived, thread = raw
    code = code_of(code_index)
    fields: dict[str, Any] = {"derived": derived}
    if code is not None:
        fields = {
            "function": getattr(code, "co_qualname", code.co_name),
            "file": code.co_filename,
            "line": code.co_firstlineno,
            "derived": derived,
        }
    if thread is not None:
        fields["thread"] = thread
    return fields


def _resolve_end(raw: tuple[Any, ...], context: Any) -> Mapping[str, Any]:
    _, status, exception = raw
    if exception is None:
        return {"status": status}
    return {"exception": exception, "status": status}


def end_fields(status: int | None, exception: str | None = None) -> tuple[Any, ...]:
    """The lazy raw fields of a terminal event (resolved by ``RESOLVERS["end"]``)."""
    return ("end", status, exception)


def pairs_of(mapping: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...] | None:
    """A dict of atoms as a tuple of pairs: a tuple holding a dict is never untracked by
    the garbage collector, one holding only tuples and atoms is."""
    return None if mapping is None else tuple(mapping.items())


RESOLVERS["end"] = _resolve_end
RESOLVERS["msg"] = _resolve_message
RESOLVERS["open"] = _resolve_open
RESOLVERS["entered"] = _resolve_entered


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
