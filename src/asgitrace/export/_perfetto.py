"""Perfetto (Chrome trace-event format): traces as tracks of slices, one track per task.

Open the file in https://ui.perfetto.dev or ``chrome://tracing``. A pure function of
finished traces, with the standard library and the views' `describe_event` (the
event table's words) for the instants' names.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..trace import SCHEMA_VERSION, TERMINAL_KINDS, Event, Trace, request_label
from ..views import describe_event
from ._json import StrPath, open_private

__all__ = ["to_perfetto", "write_perfetto"]


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
    with open_private(path, append=False) as file:
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
    label = f"{request_label(trace)} {trace.path}"
    parts = [] if trace.status is None else [str(trace.status)]
    if trace.outcome != "completed":
        parts.append(trace.outcome)
    return f"{label} ({', '.join(parts)})" if parts else label


def _instant_name(event: Event) -> str:
    """``sent: http.response.start, 200``: the kind, then the views' description."""
    details = describe_event(event)
    return f"{event.kind.value}: {details}" if details else event.kind.value


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
        for event, raw in zip(trace.events, data["events"], strict=True):
            self.event(raw, _instant_name(event))
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

    def event(self, event: Mapping[str, Any], name: str) -> None:
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
        elif kind == "task_done" or kind in TERMINAL_KINDS:
            track.run_until(t)
        if kind in _INSTANT_KINDS:
            self.out.append(
                {
                    "ph": "i",
                    "s": "t",
                    "name": name,
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
