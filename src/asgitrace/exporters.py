"""Traces out of the process: JSON, JSON lines and Perfetto's trace-event format.

Everything here is a pure function of finished traces, except `JsonlSink`, an
``on_trace`` callback that appends each finished trace to a JSON-lines file from a
background thread. Only the standard library is used.

The JSON layout is `asgitrace.Trace.to_dict`'s, described field by field in the docs
("The trace schema"); it carries ``schema_version`` so that readers can refuse what they
do not understand.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Final, Generic, TypeAlias, TypeVar, final

from ._support._log import LOGGER, log_failure
from .trace._trace import SCHEMA_VERSION, Trace
from .views._html import to_html, write_html

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "JsonlSink",
    "MalformedLine",
    "load_json",
    "read_jsonl",
    "to_dict",
    "to_html",
    "to_json",
    "to_perfetto",
    "write_html",
    "write_jsonl",
    "write_perfetto",
]

StrPath: TypeAlias = "str | os.PathLike[str]"
"""A file name, as `open` takes it."""

_FILE_MODE: Final = 0o600  # traces name paths, routes and (redacted) headers: owner only
_BATCH: Final = 1000


# -- JSON ---------------------------------------------------------------------------------


def to_dict(trace: Trace) -> dict[str, Any]:
    """Return *trace* as JSON-ready data: the same as `asgitrace.Trace.to_dict`.

    Args:
        trace: A finished trace.

    Returns:
        Plain dicts, lists, strings, numbers, booleans and ``None``, with
        ``schema_version`` first.

    .. versionadded:: 0.1
    """
    return trace.to_dict()


def to_json(trace: Trace, *, indent: int | None = None) -> str:
    """Return *trace* as a JSON text.

    Without *indent* the text is a single line (newlines inside strings are escaped), so
    it is also one line of a JSON-lines file. Non-ASCII characters are escaped, so the
    text is plain ASCII whatever the request carried.

    Args:
        trace: A finished trace.
        indent: Indent nested levels by this many spaces (pretty printing).

    .. versionadded:: 0.1
    """
    separators = (",", ":") if indent is None else None
    return json.dumps(trace.to_dict(), indent=indent, separators=separators)


def load_json(text: str | bytes) -> Trace:
    """Rebuild a trace from `to_json` (or `to_dict`) output.

    Args:
        text: One JSON document.

    Returns:
        The trace, equal field by field to the one exported.

    Raises:
        ValueError: *text* is not JSON, not a trace, or a trace of another
            ``schema_version``.

    .. versionadded:: 0.1
    """
    try:
        data = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"not JSON: {exc}") from exc
    return _from_data(data)


def _from_data(data: Any) -> Trace:
    if not isinstance(data, Mapping):
        raise ValueError(f"not a trace: a JSON {type(data).__name__}, expected an object")
    try:
        return Trace.from_dict(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a trace dictionary: {exc!r}") from exc


def _open_private(path: StrPath, *, append: bool) -> IO[str]:
    """Open *path* for writing text; a file this creates is readable by its owner only."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, _FILE_MODE)
    try:
        return open(fd, "a" if append else "w", encoding="utf-8", newline="\n")
    except BaseException:  # pragma: no cover - fdopen of a fresh descriptor does not fail
        os.close(fd)
        raise


# -- JSON lines ---------------------------------------------------------------------------


def write_jsonl(traces: Iterable[Trace], path: StrPath, *, append: bool = False) -> int:
    """Write *traces* to a JSON-lines file, one trace per line.

    A file this creates is readable and writable by its owner only (mode ``0o600``).

    Args:
        traces: Finished traces, e.g. ``tracer.traces``.
        path: The file to write.
        append: Add to the end of an existing file instead of replacing it.

    Returns:
        How many traces were written.

    .. versionadded:: 0.1
    """
    count = 0
    with _open_private(path, append=append) as file:
        for trace in traces:
            file.write(to_json(trace))
            file.write("\n")
            count += 1
    return count


@final
@dataclass(frozen=True, slots=True)
class MalformedLine:
    """A line of a JSON-lines file that `read_jsonl` could not read as a trace.

    Attributes:
        path: The file.
        line: The line number, counting from 1.
        error: What was wrong with it.

    .. versionadded:: 0.1
    """

    path: str
    line: int
    error: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.error}"


def read_jsonl(
    *paths: StrPath,
    strict: bool = False,
    on_error: Callable[[MalformedLine], object] | None = None,
) -> list[Trace]:
    """Read traces from one or several JSON-lines files, merged and sorted by start time.

    Several files (one per worker process, say) are merged into one list ordered by
    the wall-clock arrival time of each request. A trace that appears more than once
    (the same file given twice, or a file copied) is kept once: the first copy read.

    Blank lines are ignored. A malformed line (not JSON, not a trace, another
    ``schema_version``, a line cut short by a crash) is skipped and reported with its
    file and line number: to *on_error* when given, otherwise as a warning on the
    ``asgitrace`` logger. With ``strict=True`` it raises instead.

    Args:
        paths: The files to read, at least one.
        strict: Raise on the first malformed line instead of skipping it.
        on_error: Called with a `MalformedLine` for each line skipped.

    Returns:
        The traces, sorted by `asgitrace.Trace.start`, without duplicate ids.

    Raises:
        TypeError: no path was given.
        ValueError: with ``strict=True``, a malformed line (the message names the file
            and line).
        OSError: a file cannot be read.

    .. versionadded:: 0.1
    """
    if not paths:
        raise TypeError("read_jsonl() needs at least one path")
    seen: set[str] = set()
    traces: list[Trace] = []
    for path in paths:
        name = os.fspath(path)
        with open(path, "rb") as file:
            for number, raw in enumerate(file, 1):
                if not raw.strip():
                    continue
                try:
                    trace = load_json(raw.decode("utf-8"))
                except ValueError as exc:
                    problem = MalformedLine(name, number, str(exc))
                    if strict:
                        raise ValueError(str(problem)) from exc
                    if on_error is not None:
                        on_error(problem)
                    else:
                        LOGGER.warning("asgitrace: skipped a malformed trace line: %s", problem)
                    continue
                if trace.id not in seen:
                    seen.add(trace.id)
                    traces.append(trace)
    traces.sort(key=lambda t: (t.start, t.start_ns))
    return traces


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP: Final = None
_T = TypeVar("_T")


@final
class _Offload(Generic[_T]):
    """Items handled one at a time by a daemon thread, from a bounded queue.

    `submit` never blocks: when the queue is full the item is dropped and counted.
    *handle* returns whether the item was handled (``False``: count it as dropped);
    *after_batch* runs whenever the queue has been emptied, *finish* once at `close`.
    `close` is registered to run at interpreter exit.
    """

    __slots__ = (
        "__weakref__",
        "_after_batch",
        "_closed",
        "_done",
        "_dropped",
        "_finish",
        "_handle",
        "_lock",
        "_queue",
        "_thread",
        "name",
    )

    def __init__(
        self,
        name: str,
        handle: Callable[[_T], bool],
        *,
        max_queue: int,
        after_batch: Callable[[], None] | None = None,
        finish: Callable[[], None] | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue!r}")
        self.name = name
        self._handle = handle
        self._after_batch = after_batch
        self._finish = finish
        self._queue: queue.Queue[_T | _Flush | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._done = 0
        self._dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @property
    def done(self) -> int:
        return self._done

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, item: _T) -> None:
        if not self._closed:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                pass
        self.drop()

    def drop(self) -> None:
        with self._lock:
            self._dropped += 1

    def flush(self, timeout: float | None) -> bool:
        if self._closed or not self._thread.is_alive():
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        if not self._thread.is_alive():  # pragma: no cover - it ends only through _STOP
            self._call(self._finish)
            return
        try:
            # The thread drains the queue, so this waits for room briefly at most.
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:  # pragma: no cover - a handler stuck for the whole timeout
            log_failure(f"{self.name} closing: still busy after {timeout} s")
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        get = self._queue.get
        while True:
            batch = [get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for index, item in enumerate(batch):
                if item is _STOP:
                    self._stop(batch[index + 1 :])
                    return
                if isinstance(item, _Flush):
                    self._call(self._after_batch)
                    item.done.set()
                else:
                    self._one(item)
            self._call(self._after_batch)

    def _one(self, item: _T) -> None:
        try:
            handled = self._handle(item)
        except Exception as exc:
            log_failure(f"{self.name} handling a trace", exc)
            handled = False
        if handled:
            self._done += 1
        else:
            self.drop()

    def _call(self, step: Callable[[], None] | None) -> None:
        if step is not None:
            try:
                step()
            except Exception as exc:  # pragma: no cover - the steps catch their own errors
                log_failure(f"{self.name} flushing", exc)

    def _stop(self, late: list[_T | _Flush | None]) -> None:
        """Handle nothing more: count what raced in after close, release waiters, finish."""
        while True:
            try:
                late.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for item in late:
            if isinstance(item, _Flush):
                item.done.set()
            elif item is not None:
                self.drop()
        self._call(self._after_batch)
        self._call(self._finish)


@final
class JsonlSink:
    """An ``on_trace`` callback that appends each finished trace to a JSON-lines file.

    ``Tracer(on_trace=JsonlSink("traces.jsonl"))``. Calling the sink only puts the trace
    on a bounded queue (``put_nowait``): it never blocks the event loop, and when the
    queue is full the trace is dropped and counted in `dropped`. A background daemon
    thread turns traces into JSON (resolving their lazy fields) and writes them, flushing
    the file after each batch.

    The file is opened for appending when the sink is made; one it creates is readable
    by its owner only (mode ``0o600``). Give each worker process its own file (for
    example ``f"traces-{os.getpid()}.jsonl"``) and merge them with `read_jsonl`.

    `close` writes what is queued, then closes the file; it runs by itself at
    interpreter exit, and when the sink is used as a context manager. An error writing
    the file is logged once; the sink then drops what it is given.

    Args:
        path: The file to append to.
        max_queue: How many traces may wait for the writer before new ones are dropped.

    Raises:
        ValueError: *max_queue* is less than 1.
        OSError: the file cannot be opened.

    .. versionadded:: 0.1
    """

    __slots__ = ("__weakref__", "_failed", "_file", "_worker", "path")

    def __init__(self, path: StrPath, *, max_queue: int = 10_000) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue!r}")
        self.path = os.fspath(path)
        self._failed = False
        self._file = _open_private(path, append=True)
        self._worker: _Offload[Trace] = _Offload(
            "asgitrace-jsonl",
            self._write,
            max_queue=max_queue,
            after_batch=self._flush_file,
            finish=self._close_file,
        )

    def __repr__(self) -> str:
        return f"<JsonlSink {self.path!r} written={self.written} dropped={self.dropped}>"

    @property
    def written(self) -> int:
        """How many traces were written to the file so far."""
        return self._worker.done

    @property
    def dropped(self) -> int:
        """How many traces were not written: queue full, sink closed or a write failed."""
        return self._worker.dropped

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._worker.closed

    def __call__(self, trace: Trace) -> None:
        """Queue *trace* for writing, or count it as dropped; never blocks, never raises."""
        self._worker.submit(trace)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is written and flushed.

        Args:
            timeout: Seconds to wait at most (``None``: as long as it takes).

        Returns:
            Whether it was all written in time (``True`` at once on a closed sink).
        """
        return self._worker.flush(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is queued, then close the file. Later traces are dropped.

        Calling it again does nothing.

        Args:
            timeout: Seconds to wait at most for the writer to finish.
        """
        self._worker.close(timeout)

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write(self, trace: Trace) -> bool:
        if self._failed:
            return False
        try:
            line = to_json(trace)
        except Exception as exc:
            log_failure("JsonlSink: turning a trace into JSON", exc)
            return False
        try:
            self._file.write(line + "\n")
        except Exception as exc:
            self._fail(exc)
            return False
        return True

    def _flush_file(self) -> None:
        if not self._failed:
            try:
                self._file.flush()
            except Exception as exc:
                self._fail(exc)

    def _close_file(self) -> None:
        try:
            self._file.close()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        log_failure(f"JsonlSink writing {self.path!r}", exc)
        self._failed = True


# -- Perfetto / Chrome trace events -------------------------------------------------------

_SAME_CLOCK_NS: Final = 2_000_000
_INSTANT_KINDS: Final = frozenset(
    {
        "received",
        "sent",
        "disconnected",
        "entered",
        "returned",
        "completed",
        "failed",
        "cancelled",
    }
)
_TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})
_PHASE_ORDER: Final = {"X": 0, "i": 1, "s": 2, "f": 3}


def to_perfetto(traces: Trace | Iterable[Trace]) -> dict[str, Any]:
    """Return traces in the Chrome trace-event format, for Perfetto and ``chrome://tracing``.

    The result is the format's "JSON Object Format":
    ``{"traceEvents": [...], "displayTimeUnit": "ms"}``; save it with `write_perfetto`
    and open it at ui.perfetto.dev. Each request is a process (named like
    ``GET /wait (200)``), each of its tasks a thread. On a task's track:

    * a slice for the whole request (on the request's own task),
    * ``running`` slices for the steps the task ran,
    * ``await ...`` slices, named after what it awaited, while it waited,
    * ``blocked: ...`` slices, named after the line, for steps that held the loop,
    * instant events for messages received and sent, the endpoint's start and the end,

    and a flow arrow from each parent task to each task it spawned. Times are in
    microseconds from the earliest request's arrival; traces recorded in different
    processes on one machine share its monotonic clock and line up exactly.

    Args:
        traces: One trace or several.

    Returns:
        JSON-ready data.

    .. versionadded:: 0.1
    """
    items = [traces] if isinstance(traces, Trace) else list(traces)
    placed = sorted(
        zip(items, _epoch_offsets(items), strict=True),
        key=lambda item: (item[0].start_ns + item[1], item[0].id),
    )
    base = placed[0][0].start_ns + placed[0][1] if placed else 0
    flow_ids = itertools.count(1)
    events: list[dict[str, Any]] = []
    for pid, (trace, offset) in enumerate(placed, 1):
        events.extend(_PerfettoTrace(trace, pid, offset - base, flow_ids).build())
    events.sort(key=_sort_key)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"generator": "asgitrace", "schema_version": SCHEMA_VERSION},
    }


def write_perfetto(traces: Trace | Iterable[Trace], path: StrPath) -> None:
    """Write `to_perfetto` output to *path* (owner-only permissions when created).

    Args:
        traces: One trace or several.
        path: The ``.json`` file to write.

    .. versionadded:: 0.1
    """
    data = to_perfetto(traces)
    with _open_private(path, append=False) as file:
        json.dump(data, file, separators=(",", ":"))


def _epoch_offsets(traces: list[Trace]) -> list[int]:
    """For each trace, what to add to its clock readings to get epoch nanoseconds.

    Traces whose offsets agree within a few milliseconds share a monotonic clock (one
    process, or processes on one machine): they get one common offset, so that their
    relative timing is exact rather than blurred by the wall clock's resolution.
    """
    raw = [round(t.start * 1e9) - t.start_ns for t in traces]
    order = sorted(range(len(raw)), key=raw.__getitem__)
    out = list(raw)
    group: list[int] = []
    for index in [*order, -1]:
        if group and (index < 0 or raw[index] - raw[group[0]] > _SAME_CLOCK_NS):
            common = raw[group[len(group) // 2]]
            for member in group:
                out[member] = common
            group = []
        if index >= 0:
            group.append(index)
    return out


def _sort_key(event: dict[str, Any]) -> tuple[int, float, int, float]:
    if event["ph"] == "M":
        return (0, 0.0, 0, 0.0)
    return (1, event["ts"], _PHASE_ORDER[event["ph"]], -event.get("dur", 0.0))


def _request_label(trace: Trace) -> str:
    label = f"{trace.method or trace.type.upper()} {trace.path}"
    parts = [] if trace.status is None else [str(trace.status)]
    if trace.outcome != "completed":
        parts.append(trace.outcome)
    return f"{label} ({', '.join(parts)})" if parts else label


def _describe(kind: str, fields: Mapping[str, Any]) -> str:
    if kind == "received" and "path" in fields:
        return f"received {fields.get('method', fields.get('type', ''))} {fields['path']}"
    if kind in ("received", "sent", "disconnected"):
        text = f"{kind} {fields.get('type', '')}"
        if "status" in fields:
            text += f" {fields['status']}"
        if "body_bytes" in fields:
            text += f" ({fields['body_bytes']} B)"
        return text
    if kind in ("entered", "returned") and fields.get("function"):
        return f"{kind} {fields['function']}"
    if kind == "failed" and fields.get("exception"):
        return f"failed: {fields['exception']}"
    return kind


class _Slice:
    __slots__ = ("args", "cat", "end", "name", "start")

    def __init__(self, start: int, end: int, name: str, cat: str, args: dict[str, Any]) -> None:
        self.start = start
        self.end = end
        self.name = name
        self.cat = cat
        self.args = args


class _Track:
    """One task's state while its events are read in order."""

    __slots__ = ("awaiting", "name", "run_start", "slices", "started", "wait", "wait_start")

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = False
        self.run_start: int | None = None
        self.wait_start: int | None = None
        self.wait: dict[str, Any] = {}
        self.awaiting: dict[str, Any] = {}
        self.slices: list[_Slice] = []

    def run_until(self, t: int) -> None:
        if self.run_start is not None and t > self.run_start:
            self.slices.append(_Slice(self.run_start, t, "running", "step", {}))
        self.run_start = None

    def wait_until(self, t: int, extra: Mapping[str, Any]) -> None:
        if self.wait_start is not None:
            target = self.wait.get("target")
            name = f"await {target}" if target else "waiting"
            args = {**self.wait, **extra}
            self.slices.append(_Slice(self.wait_start, max(t, self.wait_start), name, "wait", args))
        self.wait_start = None

    def blocked(self, start: int, end: int, fields: Mapping[str, Any]) -> None:
        if self.run_start is not None and start < self.run_start:
            # The step's clock started a little before its `resumed` was recorded.
            last = self.slices[-1] if self.slices else None
            if last is not None and last.cat == "wait" and last.end == self.run_start:
                last.end = max(last.start, start)
            self.run_start = start
        what = fields.get("code") or fields.get("function") or "a step"
        self.slices.append(_Slice(start, end, f"blocked: {what}", "blocked", dict(fields)))


class _PerfettoTrace:
    """Builds the trace events of one request."""

    def __init__(self, trace: Trace, pid: int, shift: int, flow_ids: Iterable[int]) -> None:
        self.trace = trace
        self.pid = pid
        self.shift = shift
        self.flow_ids = iter(flow_ids)
        self.tracks: dict[int, _Track] = {}
        self.out: list[dict[str, Any]] = []

    def us(self, t_ns: int) -> float:
        return (t_ns + self.shift) / 1000

    def track(self, task: Mapping[str, Any]) -> tuple[int, _Track]:
        tid = int(task["id"])
        track = self.tracks.get(tid)
        if track is None:
            track = self.tracks[tid] = _Track(str(task["name"]))
        return tid, track

    def build(self) -> list[dict[str, Any]]:
        trace = self.trace
        data = trace.to_dict()
        request_tid, request_track = self.track(data["events"][-1]["task"])
        label = _request_label(trace)
        request_track.slices.append(
            _Slice(
                trace.start_ns,
                trace.end_ns,
                label,
                "request",
                {
                    key: data[key]
                    for key in ("id", "method", "path", "route", "query", "status", "outcome")
                }
                | {"dropped": data["dropped"]},
            )
        )
        for event in data["events"]:
            self.event(event)
        for track in self.tracks.values():
            track.run_until(trace.end_ns)
            track.wait_until(trace.end_ns, {"unfinished": True})
        self.meta("process_name", 0, {"name": label})
        self.meta("process_sort_index", 0, {"sort_index": self.pid})
        for index, (tid, track) in enumerate(self.tracks.items()):
            suffix = " (request)" if tid == request_tid else ""
            self.meta("thread_name", tid, {"name": f"{track.name}{suffix}"})
            self.meta("thread_sort_index", tid, {"sort_index": index})
            for piece in _nested(track.slices):
                self.out.append(
                    {
                        "ph": "X",
                        "name": piece.name,
                        "cat": piece.cat,
                        "ts": self.us(piece.start),
                        "dur": (piece.end - piece.start) / 1000,
                        "pid": self.pid,
                        "tid": tid,
                        "args": piece.args,
                    }
                )
        return self.out

    def meta(self, name: str, tid: int, args: dict[str, Any]) -> None:
        self.out.append({"ph": "M", "name": name, "pid": self.pid, "tid": tid, "args": args})

    def event(self, event: Mapping[str, Any]) -> None:
        tid, track = self.track(event["task"])
        kind: str = event["kind"]
        t: int = event["t_ns"]
        fields: dict[str, Any] = event["fields"]
        if not track.started:
            track.started = True
            track.run_start = t  # a task's first event: it is running
        if kind == "awaiting":
            track.awaiting = fields
        elif kind == "yielded":
            track.run_until(t)
            track.wait_start = t
            track.wait = {**track.awaiting, **fields, "task": track.name}
            track.awaiting = {}
        elif kind == "resumed":
            track.wait_until(t, fields)
            track.run_start = t
        elif kind == "blocked":
            start = int(fields.get("started_ns", t))
            end = start + int(fields.get("duration_ns", 0))
            track.blocked(start, end, fields)
        elif kind == "spawned":
            self.flow(fields.get("parent"), tid, t)
        elif kind == "task_done" or kind in _TERMINAL:
            track.run_until(t)
        if kind in _INSTANT_KINDS:
            self.out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "name": _describe(kind, fields),
                    "cat": kind,
                    "ts": self.us(t),
                    "pid": self.pid,
                    "tid": tid,
                    "args": fields,
                }
            )

    def flow(self, parent: Any, child_tid: int, t: int) -> None:
        if not isinstance(parent, Mapping) or "id" not in parent:
            return
        parent_tid, _ = self.track(parent)
        flow_id = next(self.flow_ids)
        common = {"name": "spawn", "cat": "spawn", "id": flow_id, "ts": self.us(t), "pid": self.pid}
        self.out.append({"ph": "s", **common, "tid": parent_tid})
        self.out.append({"ph": "f", "bp": "e", **common, "tid": child_tid})


def _nested(slices: list[_Slice]) -> list[_Slice]:
    """Order one track's slices and clip any partial overlap (trace viewers need nesting).

    The slices built from a well-formed trace nest already; this guards against traces
    whose events were dropped (``max_events``) or edited by hand.
    """
    ordered = sorted(slices, key=lambda s: (s.start, -s.end))
    stack: list[_Slice] = []
    for piece in ordered:
        while stack and stack[-1].end <= piece.start:
            stack.pop()
        if stack and piece.end > stack[-1].end:
            piece.end = stack[-1].end
            piece.args = {**piece.args, "clipped": True}
        stack.append(piece)
    return ordered
