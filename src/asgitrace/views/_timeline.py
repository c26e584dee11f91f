"""Swimlanes of several requests, and the key moments of one: what a developer should notice."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..trace import Event, EventKind, request_label
from ._rows import final_body
from ._text import blocked_by_text, fmt_duration, short_name, target_of, where_of

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["Lane", "key_moments", "timeline_lanes"]


@dataclass(frozen=True, slots=True)
class Lane:
    """One request on the shared time axis: (start_ns, end_ns, state) segments.

    States: ``running``, ``awaiting``, ``blocked``, ``after`` (work after the response).
    """

    label: str
    start_ns: int
    end_ns: int
    segments: tuple[tuple[int, int, str], ...]


def timeline_lanes(traces: Iterable[Trace]) -> list[Lane]:
    """One lane per trace, in order of arrival, on the traces' shared clock."""
    lanes = []
    for trace in sorted(traces, key=lambda t: t.start_ns):
        segments: list[tuple[int, int, str]] = []
        request = trace.task
        running_since: int | None = trace.start_ns
        waiting_since: int | None = None
        response_end: int | None = None
        for e in trace.events:
            if e.kind is EventKind.SENT and final_body(e):
                response_end = e.t_ns
            if e.task != request:
                continue
            if e.kind is EventKind.YIELDED and running_since is not None:
                segments.append((running_since, e.t_ns, "running"))
                running_since, waiting_since = None, e.t_ns
            elif e.kind is EventKind.RESUMED and waiting_since is not None:
                segments.append((waiting_since, e.t_ns, "awaiting"))
                running_since, waiting_since = e.t_ns, None
        if running_since is not None:
            segments.append((running_since, trace.end_ns, "running"))
        if waiting_since is not None:
            segments.append((waiting_since, trace.end_ns, "awaiting"))
        if response_end is not None:
            segments = [s for seg in segments for s in _split(seg, response_end)]
        for b in trace.blocking():
            duration = int(b.get("duration_ns", 0))
            start = int(b.get("started_ns", b.t_ns - duration))
            segments.append((start, start + duration, "blocked"))
        label = f"{request_label(trace)} {trace.path}"
        lanes.append(Lane(label, trace.start_ns, trace.end_ns, tuple(segments)))
    return lanes


def _split(seg: tuple[int, int, str], at: int) -> list[tuple[int, int, str]]:
    start, end, state = seg
    if end <= at:
        return [seg]
    if start >= at:
        return [(start, end, "after")]
    return [(start, at, state), (at, end, "after")]


# -- key moments ------------------------------------------------------------------------


def key_moments(trace: Trace, *, lag_threshold_ns: int = 10_000_000) -> list[str]:
    """The few things about *trace* a developer should notice, most important first."""
    moments: list[str] = []
    for b in trace.blocking():
        where = where_of(b)
        moments.append(
            f"Blocked the event loop for {fmt_duration(b.get('duration_ns'))}"
            f" at {where or b.get('function', '?')}: {b.get('code') or '?'}"
            " — no other request could run meanwhile."
        )
    waits: list[tuple[int, str]] = []
    thread_ns = 0
    pending: dict[int, Event] = {}
    for e in trace.events:
        if e.kind is EventKind.AWAITING:
            pending[e.task.id] = e
        elif e.kind is EventKind.RESUMED and e.task.id in pending:
            awaiting = pending.pop(e.task.id)
            waited = int(e.get("waited_ns", 0))
            if awaiting.get("thread") and not awaiting.get("cooperative"):
                thread_ns += waited
            if awaiting.get("function") or awaiting.get("thread"):
                blamed = blocked_by_text(e)
                waits.append(
                    (
                        waited,
                        f"{target_of(awaiting)} ({where_of(awaiting) or e.task.name})"
                        + (f": {blamed}" if blamed else ""),
                    )
                )
            lag = e.get("lag_ns")
            if lag is not None and lag >= lag_threshold_ns:
                moments.append(
                    f"Loop lag {fmt_duration(lag)} resuming after {target_of(awaiting)}:"
                    " the loop was busy when the wait ended."
                )
    for waited, what in sorted(waits, reverse=True)[:3]:
        moments.append(f"Waited {fmt_duration(waited)} on {what}.")
    if thread_ns:
        moments.append(f"{fmt_duration(thread_ns)} in the thread pool.")
    sent_end = [e.t_ns for e in trace.of_kind("sent") if final_body(e)]
    if sent_end and trace.end_ns - sent_end[-1] >= 1_000_000:
        moments.append(
            f"{fmt_duration(trace.end_ns - sent_end[-1])} of work after the response was sent"
            f"{_after_response(trace, sent_end[-1])}: the client did not wait for it."
        )
    lanes = timeline_lanes([trace])
    running = sum(e - s for s, e, st in lanes[0].segments if st in ("running",))
    total = max(trace.duration_ns, 1)
    moments.append(
        f"Running {running * 100 / total:.0f} % of {fmt_duration(total)},"
        f" waiting {100 - running * 100 / total:.0f} %."
    )
    return moments


_TEARDOWN_MARKS: Final = ("__exit__", "__aexit__", "contextmanager")


def _after_response(trace: Trace, sent_ns: int) -> str:
    """What the work after the response was, from what it awaited: a yield dependency's
    teardown (``__exit__`` of its context manager), background tasks (app functions), or
    nothing named (the words then claim nothing)."""
    tasks: list[str] = []
    teardown = False
    for e in trace.events:
        if e.t_ns < sent_ns or e.kind is not EventKind.AWAITING:
            continue
        thread = e.get("thread")
        text = f"{thread or ''} {e.get('via') or ''} {e.get('function') or ''}"
        if any(mark in text for mark in _TEARDOWN_MARKS):
            teardown = True
        elif e.get("function") or thread:
            name = short_name(e.get("function") or thread)
            if name not in tasks:
                tasks.append(name)
    parts = []
    if tasks:
        noun = "background task" if len(tasks) == 1 else "background tasks"
        parts.append(f"{noun} {', '.join(tasks[:3])}")
    if teardown:
        parts.append("dependency teardown")
    return f" ({'; '.join(parts)})" if parts else ""
