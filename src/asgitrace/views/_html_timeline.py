"""The timeline of an HTML report: every request on one time axis, a lane each, with the
escaping and labels the rest of the page shares."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ..trace import request_label
from ._steps import Step
from ._text import fmt_duration
from ._timeline import Lane

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["STATE_NAMES", "esc", "method_of", "status_class", "ticks", "timeline_html"]


# A lane with more segments than this is drawn at a coarser grain (one bucket per
# 1/_BUCKETS of the time axis), so a streaming request does not make the page heavy.
_MAX_SEGMENTS: Final = 400


_BUCKETS: Final = 2000


_PRIORITY: Final = {"blocked": 4, "running": 3, "after": 2, "awaiting": 1}


STATE_NAMES: Final = {
    "running": "Running",
    "awaiting": "Awaiting",
    "blocked": "Blocked the loop",
    "after": "After the response",
}


_WAIT_KINDS: Final = frozenset({"await", "yield", "thread"})


# Rows that describe a span already named by the row before them (the wait of an await)
# or drawn as their own segment (a block).
_SPANS: Final = frozenset({"blocked", "loop"})


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") + "%"


def ticks(span: int) -> list[tuple[int, str]]:
    """Round tick positions (1, 2 or 5 times a power of ten) for an axis of *span* ns."""
    raw = span / 8
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(int(step), 1)
    if span >= 1_000_000_000:
        unit, scale = "s", 1e9
    elif span >= 1_000_000:
        unit, scale = "ms", 1e6
    elif span >= 1_000:
        unit, scale = "µs", 1e3
    else:
        unit, scale = "ns", 1.0
    return [(at, "0" if at == 0 else f"{at / scale:g} {unit}") for at in range(0, span + 1, step)]


def status_class(trace: Trace) -> str:
    status = trace.status
    if status is None:
        return "bad" if trace.outcome == "failed" else ""
    if status >= 500:
        return "bad"
    if status >= 400:
        return "warn"
    return "ok" if status < 300 else "info"


def method_of(trace: Trace) -> str:
    return request_label(trace)


def _coarsen(
    segments: Sequence[tuple[int, int, str]], origin: int, span: int
) -> list[tuple[int, int, str]]:
    """At most one segment per bucket of the axis: the state that matters most there."""
    width = max(span // _BUCKETS, 1)
    buckets: dict[int, str] = {}
    for start, end, state in segments:
        for bucket in range((start - origin) // width, (max(end - 1, start) - origin) // width + 1):
            held = buckets.get(bucket)
            if held is None or _PRIORITY[state] > _PRIORITY[held]:
                buckets[bucket] = state
    merged: list[tuple[int, int, str]] = []
    for bucket in sorted(buckets):
        start, state = origin + bucket * width, buckets[bucket]
        if merged and merged[-1][2] == state and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], start + width, state)
        else:
            merged.append((start, start + width, state))
    return merged


def _segment_step(
    trace: Trace, steps: Sequence[Step], start: int, end: int, state: str
) -> tuple[Step | None, str]:
    """The execution-table row a timeline segment belongs to, and a sentence for it."""
    if state == "blocked":
        block = next(
            (s for s in steps if s.kind == "blocked" and s.duration_ns == end - start), None
        )
        return block, block.action if block is not None else "A step held the event loop"
    offset = start - trace.start_ns
    request = trace.task.name
    found: Step | None = None
    for step in steps:
        if step.offset_ns > offset:
            break
        if step.kind not in _SPANS and step.task == request:
            found = step
    if found is None:  # the arrival, recorded a moment after the trace's start
        found = next((s for s in steps if s.task == request and s.kind not in _SPANS), None)
        if found is None:
            return None, ""
    if state == "awaiting" and found.kind not in _WAIT_KINDS:
        return None, "Suspended inside the framework (a short wait the table leaves out)"
    what = found.action
    if state == "awaiting" and found.number < len(steps):
        following = steps[found.number]  # numbers count from 1: this is the next row
        if following.kind == "loop":
            what += " — " + following.action
    return found, what


def _lane_html(
    n: int, trace: Trace, steps: Sequence[Step], lane: Lane, origin: int, span: int
) -> str:
    segments: Sequence[tuple[int, int, str]] = lane.segments
    coarse = len(segments) > _MAX_SEGMENTS
    if coarse:
        segments = _coarsen(segments, origin, span)
    # Waits first, blocks last: later siblings paint over earlier ones.
    ordered = sorted(segments, key=lambda s: (_PRIORITY[s[2]], s[0]))
    parts = []
    for start, end, state in ordered:
        if coarse:
            step, what = None, f"Drawn coarsely: this request has {len(lane.segments)} segments"
        else:
            step, what = _segment_step(trace, steps, start, end, state)
        parts.append(
            f'<div class="seg {esc(state)}" style="left:{_pct((start - origin) * 100 / span)};'
            f'width:{_pct(max(end - start, 0) * 100 / span)}" data-state="{esc(state)}"'
            f' data-at="{esc(fmt_duration(max(start - trace.start_ns, 0)))}"'
            f' data-end="{esc(fmt_duration(max(end - trace.start_ns, 0)))}"'
            f' data-took="{esc(fmt_duration(end - start))}" data-what="{esc(what)}"'
            f' data-step="{step.number if step is not None else ""}"></div>'
        )
    blocked = any(s[2] == "blocked" for s in lane.segments)
    status = trace.status if trace.status is not None else trace.outcome
    full = f"{method_of(trace)} {trace.path}"
    flag = '<span class="lane-flag" title="blocked the event loop">⚠</span>' if blocked else ""
    return (
        f'<div class="lane" id="lane-{n}" data-n="{n}" role="option" aria-selected="false"'
        f' tabindex="{0 if n == 1 else -1}" title="{esc(full)}">'
        f'<div class="lane-label"><span class="lane-n">{n}</span>'
        f'<span class="method">{esc(method_of(trace))}</span>'
        f'<span class="path">{esc(trace.path)}</span>{flag}'
        f'<span class="pill {status_class(trace)}">{esc(status)}</span>'
        f'<span class="lane-dur">{esc(fmt_duration(trace.duration_ns))}</span></div>'
        f'<div class="track"><div class="extent" style="left:'
        f"{_pct((lane.start_ns - origin) * 100 / span)};width:"
        f'{_pct((lane.end_ns - lane.start_ns) * 100 / span)}"></div>{"".join(parts)}</div></div>'
    )


def timeline_html(
    traces: Sequence[Trace], steps: Sequence[Sequence[Step]], lanes: Sequence[Lane]
) -> str:
    origin = min(lane.start_ns for lane in lanes)
    span = max(max(lane.end_ns for lane in lanes) - origin, 1)
    marks = ticks(span)
    tick_html = "".join(
        f'<span class="tick{" first" if at == 0 else ""}" style="left:{_pct(at * 100 / span)}">'
        f"{esc(label)}</span>"
        for at, label in marks
    )
    grid = "".join(
        f'<div class="gl" style="left:{_pct(at * 100 / span)}"></div>' for at, _ in marks
    )
    lane_html = "".join(
        _lane_html(n, trace, trace_steps, lane, origin, span)
        for n, (trace, trace_steps, lane) in enumerate(zip(traces, steps, lanes, strict=True), 1)
    )
    legend = "".join(
        f'<span><i class="{state}"></i>{esc(name.lower())}</span>'
        for state, name in STATE_NAMES.items()
    )
    return (
        '<section class="card" id="timeline">'
        '<div class="card-head"><h2>Timeline</h2>'
        '<span class="hint">one lane per request · click a lane to see its tables</span>'
        f'<div class="legend">{legend}</div></div>'
        '<div class="tl" id="timeline-lanes" role="listbox" aria-label="Requests">'
        '<div class="tl-axis"><div class="corner">Request</div>'
        f'<div class="ticks">{tick_html}</div></div>'
        f'<div class="tl-body"><div class="grid">{grid}</div>{lane_html}</div></div>'
        '<div class="seg-detail" id="seg-detail">Hover a segment for its details;'
        " click one to pin them here.</div></section>"
    )
