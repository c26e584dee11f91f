"""One request at a glance: its waits and blocking (`TraceStats`), and the line
``asgitrace serve`` prints for it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from ..trace import EventKind, request_label
from ._text import fmt_duration, place, printable

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = [
    "TraceStats",
    "blocked_text",
    "request_line",
    "request_text",
    "trace_stats",
    "waits_text",
    "where_text",
]


def request_text(trace: Trace) -> str:
    """``GET /path``, printable."""
    return printable(f"{request_label(trace)} {trace.path}")


def where_text(file: object, line: object) -> str:
    return place(file, line) or "?"


@dataclass(frozen=True, slots=True)
class TraceStats:
    """Per request: how often and how long it waited, and how long it blocked the loop.

    Attributes:
        waits: Suspensions on something not ready (cooperative yields not counted).
        waited_ns: Time spent in those suspensions, summed over the request's tasks.
        blocked_ns: Time its steps held the event loop past the blocking threshold.
        blocked_at: ``file:line`` of the longest blocked step, or ``""``.
        held_ns: Time of its waits that other requests' blocked steps held the loop.
    """

    waits: int
    waited_ns: int
    blocked_ns: int
    blocked_at: str
    held_ns: int = 0


def trace_stats(trace: Trace) -> TraceStats:
    """Count the waits and blocked time of one trace."""
    waits = waited = blocked = longest = held = 0
    blocked_at = ""
    pending: set[int] = set()
    for e in trace.events:
        if e.kind is EventKind.AWAITING:
            if not e.get("cooperative"):
                waits += 1
                pending.add(e.task.id)
        elif e.kind is EventKind.RESUMED and e.task.id in pending:
            pending.discard(e.task.id)
            waited += int(e.get("waited_ns") or 0)
            held += sum(int(b.get("duration_ns") or 0) for b in e.get("blocked_by") or ())
        elif e.kind is EventKind.BLOCKED:
            duration = int(e.get("duration_ns") or 0)
            blocked += duration
            if duration >= longest:
                longest, blocked_at = duration, where_text(e.get("file"), e.get("line"))
    return TraceStats(waits, waited, blocked, blocked_at, held)


def waits_text(stats: TraceStats) -> str:
    if not stats.waits:
        return "no waits"
    noun = "wait" if stats.waits == 1 else "waits"
    held = f" ({fmt_duration(stats.held_ns)} of it others' blocking)" if stats.held_ns else ""
    return f"{stats.waits} {noun} {fmt_duration(stats.waited_ns)}{held}"


def blocked_text(stats: TraceStats) -> str:
    if not stats.blocked_ns:
        return "no blocking"
    return f"blocked {fmt_duration(stats.blocked_ns)} at {stats.blocked_at}"


def request_line(trace: Trace) -> Text:
    """One compact line for a finished request (``asgitrace serve``).

    ``14:03:07 GET  /wait 200 1.002 s · 1 wait 1.001 s · no blocking``
    """
    stats = trace_stats(trace)
    line = Text(time.strftime("%H:%M:%S", time.localtime(trace.start)) + " ", style="dim")
    line.append(f"{request_label(trace):<4} ", style="bold")
    line.append(printable(trace.path + (f"?{trace.query}" if trace.query else "")) + " ")
    status = "—" if trace.status is None else str(trace.status)
    error = trace.status is None or trace.status >= 500
    line.append(status, style="asgitrace.failed" if error else "asgitrace.running")
    line.append(f" {fmt_duration(trace.duration_ns)}", style="asgitrace.time")
    line.append(f" · {waits_text(stats)} · ")
    line.append(blocked_text(stats), style="asgitrace.blocked" if stats.blocked_ns else "")
    if trace.outcome != "completed":
        extra = f" ({trace.exception})" if trace.exception else ""
        line.append(f" · {trace.outcome}{extra}", style="asgitrace.failed")
    return line
