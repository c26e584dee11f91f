"""`Recorder`: collects one request's raw events while it runs, and closes them into a record.

The record is the trace's data as a tuple of atoms (`asgitrace.trace.Trace.of_record` reads
it). What a view will read of it is fixed when it closes: the loop's other work while each
task waited is read from the loop monitor's ring then, not later.
"""

from __future__ import annotations

import itertools
import marshal
import os
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, final

from .._support import safe_repr
from ..trace import EventKind, TaskRef, Trace
from ..trace.codec import work_key
from ._context import new_task_ref
from ._loopmon import window

if TYPE_CHECKING:
    from ._loopmon import LoopMonitor
    from ._tracer import Tracer

__all__ = ["MAX_TEXT", "Recorder", "other_work"]

_seq = itertools.count(1)
# Trace ids: a random per-process prefix and a counter. Unique across processes without
# a random draw per request (os.urandom is a system call, ~9 µs on some VMs).
_ID_PREFIX = os.urandom(5).hex()
_ids = itertools.count(1)

# Keyed by the enum members, which hash and compare as their values: plain strings
# ("sent") find their entry too.
_KIND_TEXT: Final[dict[EventKind | str, str]] = {kind: kind.value for kind in EventKind}

MAX_TEXT: Final = 2048
"""Characters kept of a path, query string or method (they come from clients)."""


def _cut(text: str) -> str:
    return text[:MAX_TEXT] + f"…(+{len(text) - MAX_TEXT} chars)"


def _text(value: Any) -> str:
    """A client-supplied scope value as bounded text (JSON-ready whatever its type)."""
    if type(value) is not str:
        value = safe_repr(value)
    return value if len(value) <= MAX_TEXT else _cut(value)


def _route_of(scope: Mapping[str, Any]) -> str | None:
    """The route template as the client sees it: with the prefixes of routers included
    with ``include_router(prefix=...)`` (FastAPI's effective route, when it keeps the
    included route unprefixed) and of the mounts the request went through."""
    route = scope.get("route")
    path = getattr(route, "path", None) if route is not None else None
    if path is None:
        return None
    fastapi = scope.get("fastapi")
    if isinstance(fastapi, Mapping):
        effective = getattr(fastapi.get("effective_route_context"), "path_format", None)
        if isinstance(effective, str):
            path = effective
    root = scope.get("root_path")
    app_root = scope.get("app_root_path")
    if isinstance(root, str) and isinstance(app_root, str) and root.startswith(app_root):
        path = root[len(app_root) :] + path  # the mounts' prefixes
    return _text(path)


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
        "folded",
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
        "trace_id",
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
        self.events: list[tuple[Any, ...]] = []  # RawEvents and compact records
        # Compact suspension records in `events` (each one is two events: see
        # `asgitrace.trace.codec.expand`), counted against `limit` as two.
        self.folded = 0
        self.dropped = 0
        self.status: int | None = None
        self.response_headers: tuple[tuple[Any, Any], ...] = ()
        self.response_done = False
        self.entered = False
        self.returned = False
        self.endpoint_code: Any = None
        self.start_wall = time.time()
        self.start_ns = clock()
        self.trace_id = f"{_ID_PREFIX}{next(_ids):06x}"

    def add(self, kind: EventKind | str, fields: Any, task: TaskRef | None = None) -> None:
        """Record one event now (in *task*, by default the request's own task).

        *fields* is a dict of atoms, or a lazy tuple (see `RawEvent`).
        """
        if len(self.events) + self.folded < self.limit:
            task = task or self.task
            self.events.append(
                (next(_seq), self.clock(), _KIND_TEXT[kind], task.id, task.name, fields)
            )
        else:
            self.dropped += 1

    def add_at_step_start(self, kind: EventKind | str, fields: Any, task: TaskRef) -> None:
        """Record a derived event at the start of *task*'s current step, not now.

        The step started at *task*'s last ``resumed`` (or ``spawned``) event, or after
        the last message received: the event goes right after that one, with its time,
        so that it is never later than the work it started (a blocking step's
        ``blocked``, the messages sent). The events after it keep their order and
        their sequence numbers move up one place, so that they stay sorted and unique.
        """
        events = self.events
        if len(events) + self.folded >= self.limit:
            self.dropped += 1
            return
        index = len(events) - 1
        while index > 0:
            e = events[index]
            if e[2] == "received" or (e[3] == task.id and e[2] in ("resumed", "spawned")):
                break
            index -= 1
        if index < 0:
            self.add(kind, fields, task)
            return
        tail = events[index + 1 :]
        seqs = [e[0] for e in tail]
        seqs.append(next(_seq))
        moved = [(seqs[0], events[index][1], _KIND_TEXT[kind], task.id, task.name, fields)]
        moved.extend((seqs[i + 1], *e[1:]) for i, e in enumerate(tail))
        events[index + 1 :] = moved

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
            self.trace_id, self.type, self.method, self.path,
            _route_of(self.scope), self.query, self.headers, self.response_headers,
            self.status, self.start_wall, self.start_ns, end, self.dropped, tuple(self.events),
            () if mon is None else other_work(mon, self.events),
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
        self.tracer.finished(stored, end - self.start_ns, record)
        return stored

    def finish(self, kind: EventKind | str, fields: Any) -> Trace:
        """`close`, and return the finished trace."""
        return Trace.of_record(self.close(kind, fields))


_NO_EVENTS: Final[list[tuple[Any, ...]]] = []  # a closed recorder's (never appended to: limit 0)
_NO_SCOPE: Final[Mapping[str, Any]] = MappingProxyType({})


def other_work(
    mon: LoopMonitor, events: list[tuple[Any, ...]]
) -> tuple[tuple[tuple[int, int, int], tuple[tuple[str, Any], ...]], ...]:
    """The trace's work table (`asgitrace.trace.codec.Work`, as pairs): what the loop ran
    for others while each ``resumed`` event's task waited, read from *mon*'s ring now.

    Only waits during which other steps ran get an entry (the decoder says
    ``other_steps: 0`` for the rest): most waits of a quiet loop have none, and this
    runs on the loop's thread as the trace closes.
    """
    work: dict[tuple[int, int, int], tuple[tuple[str, Any], ...]] = {}
    ring, steps, blocks = mon.ring, mon.steps, mon.blocks
    for event in events:
        fields = event[5]
        if event[2] == "resumed" and type(fields) is tuple and fields[5] > fields[4]:
            key = work_key(fields)
            if key not in work:
                work[key] = window(ring, steps, blocks, key[0], key[1], key[2])
    return tuple(work.items())
