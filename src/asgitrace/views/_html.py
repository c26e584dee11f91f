"""`to_html(traces)`: one self-contained HTML page of traces, for a browser.

The page lays out the same models as the rich and markdown views (`_steps`, `_tracker`,
`_timeline`): a
timeline of every request on one time axis, and for the selected request its execution
table, variable tracker and key moments. Everything is rendered here, in Python, with
every trace-derived text escaped; a small inline script adds the interaction (select a
request, segment details on hover or click, keyboard navigation, ``#req-N`` links).
Without the script the page still reads top to bottom.

The file fetches nothing: styles and script are inline and its Content-Security-Policy
(``default-src 'none'``) forbids any request. The script runs under a hash, so markup
that slipped into a trace's text could not run even if escaping failed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from importlib.resources import files
from typing import Any, Final, TypeAlias

from .._version import __version__
from ..trace import Trace
from ._html_timeline import STATE_NAMES, esc, method_of, status_class, timeline_html
from ._steps import Detail, Step, execution_steps
from ._text import fmt_duration
from ._timeline import key_moments, timeline_lanes
from ._tracker import variable_tracker

__all__ = ["MAX_DETAILS", "to_html", "write_html"]

StrPath: TypeAlias = "str | os.PathLike[str]"

MAX_DETAILS: Final = 200
"""Requests whose tables a report includes; the timeline always shows every request."""

_MARK_TAGS: Final = {
    "blocked": "blocked the loop",
    "child": "child task",
    "thread": "worker thread",
    "after": "after response",
    "failed": "failed",
    "cancelled": "cancelled",
    "disconnected": "disconnected",
}

# The page's style sheet and script: package data beside this module (report.css,
# report.js), read once at import.
_CSS: Final = files(__package__).joinpath("report.css").read_text(encoding="utf-8")
_JS: Final = files(__package__).joinpath("report.js").read_text(encoding="utf-8")
_SCRIPT_HASH: Final = base64.b64encode(hashlib.sha256(_JS.encode()).digest()).decode()
_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"
)


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element or open markup inside it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (
        ("&", "\\u0026"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def _row_html(n: int, step: Step) -> str:
    classes = [f"kind-{step.kind}"] if step.kind else []
    if step.mark:
        classes.append(f"mark-{step.mark}")
    tag = _MARK_TAGS.get(step.mark)
    action = (f'<span class="tag {esc(step.mark)}">{esc(tag)}</span>' if tag else "") + esc(
        step.action
    )
    at = ("≈" if step.approx else "") + fmt_duration(step.offset_ns)
    took = fmt_duration(step.duration_ns) if step.duration_ns is not None else ""
    awaited = '<span class="yes">Yes</span>' if step.awaited else '<span class="no">No</span>'
    return (
        f'<tr id="req-{n}-step-{step.number}" class="{" ".join(classes)}">'
        f'<td class="num">{step.number}</td><td class="num time">{esc(at)}</td>'
        f'<td class="num time">{esc(took)}</td><td class="action">{action}</td>'
        f"<td>{esc(step.before)}</td><td>{awaited}</td><td>{esc(step.after)}</td>"
        f'<td class="out"><code>{esc(step.output)}</code></td></tr>'
    )


def _moment_class(moment: str) -> str:
    if moment.startswith("Blocked"):
        return "bad"
    if moment.startswith("Loop lag") or "after the response" in moment:
        return "warn"
    return "info"


def _headers_html(trace: Trace) -> str:
    groups = [("Request headers", trace.headers), ("Response headers", trace.response_headers)]
    tables = "".join(
        f"<table><tr><th>{esc(name)}</th><th></th></tr>"
        + "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in pairs)
        + "</table>"
        for name, pairs in groups
        if pairs
    )
    if not tables:
        return ""
    return f'<details class="headers"><summary>Headers (redacted)</summary>{tables}</details>'


def _started(trace: Trace) -> str:
    if trace.start <= 0:
        return ""
    when = datetime.datetime.fromtimestamp(trace.start, tz=datetime.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _request_html(n: int, trace: Trace, steps: Sequence[Step], detail: Detail) -> str:
    tracker = variable_tracker(trace, steps, detail=detail)
    status = trace.status if trace.status is not None else "no response"
    meta = [
        ("Took", fmt_duration(trace.duration_ns)),
        ("Outcome", trace.outcome + (f" ({trace.exception})" if trace.exception else "")),
        ("Route", trace.route or ""),
        ("Query", trace.query),
        ("Started", _started(trace)),
        ("Task", trace.task.name),
        ("Trace id", trace.id),
        ("Events", str(len(trace.raw_events))),
        ("Dropped", f"{trace.dropped} (max_events)" if trace.dropped else ""),
    ]
    meta_html = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in meta if v)
    moments = "".join(f'<li class="{_moment_class(m)}">{esc(m)}</li>' for m in key_moments(trace))
    rows = "".join(_row_html(n, step) for step in steps)
    head = "".join(
        f'<th class="num">{h}</th>' if h in ("Step", "At", "Took") else f"<th>{h}</th>"
        for h in (
            "Step",
            "At",
            "Took",
            "Action",
            "State Before",
            "Awaited?",
            "State After",
            "Output",
        )
    )
    tracker_head = "<th>Variable</th>" + "".join(f"<th>{esc(c)}</th>" for c in tracker.columns)
    tracker_rows = ""
    for name, values in tracker.rows:
        cells = []
        for i, value in enumerate(values):
            changed = "changed" if i and value != values[i - 1] else ("same" if i else "")
            cells.append(f'<td class="{changed}">{esc(value)}</td>')
        tracker_rows += f"<tr><td>{esc(name)}</td>{''.join(cells)}</tr>"
    approx = (
        '<p class="note">≈ marks a time derived from the next observation, not observed'
        " itself (exact entry times need Python 3.12+).</p>"
        if any(s.approx for s in steps)
        else ""
    )
    return (
        f'<section class="card request" id="req-{n}" data-n="{n}"'
        f' aria-labelledby="req-{n}-title">'
        f'<header class="req-head"><h2 id="req-{n}-title"><span class="req-n">#{n}</span>'
        f'<span class="method">{esc(method_of(trace))}</span>'
        f'<span class="path">{esc(trace.path)}</span><span class="arrow">→</span>'
        f'<span class="pill {status_class(trace)}">{esc(status)}</span></h2>'
        f'<dl class="meta">{meta_html}</dl></header>'
        f'<div class="block moments-block"><h3>Key moments</h3>'
        f'<ul class="moments">{moments}</ul></div>'
        f'<div class="block exec-block"><h3>Execution table</h3><div class="table-wrap">'
        f'<table class="exec"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
        f"</table></div>{approx}</div>"
        f'<div class="block tracker-block"><h3>Variable tracker</h3><div class="table-wrap">'
        f'<table class="tracker"><thead><tr>{tracker_head}</tr></thead>'
        f"<tbody>{tracker_rows}</tbody></table></div></div>"
        f"{_headers_html(trace)}</section>"
    )


def _detailed(traces: Sequence[Trace], limit: int) -> set[int]:
    """Which requests (by index) get tables: all, or the notable and slowest first."""
    if len(traces) <= limit:
        return set(range(len(traces)))

    def rank(index: int) -> tuple[bool, int]:
        trace = traces[index]
        notable = (
            bool(trace.blocking()) or trace.outcome != "completed" or (trace.status or 0) >= 500
        )
        return (not notable, -trace.duration_ns)

    return set(sorted(range(len(traces)), key=rank)[:limit])


def to_html(
    traces: Trace | Iterable[Trace],
    *,
    title: str = "asgitrace report",
    max_details: int = MAX_DETAILS,
    detail: Detail = False,
) -> str:
    """Return one self-contained HTML page showing *traces*.

    The page has a timeline of every request on a shared time axis (running, awaiting,
    blocked and after-response segments; hover or click a segment for its details, click
    a lane to select its request) and, for the selected request, its execution table,
    variable tracker and key moments. Styles and script are inline and the page fetches
    nothing; every text that comes from a trace is escaped.

    Args:
        traces: One finished trace or several, e.g. ``tracer.traces``; shown in order
            of arrival.
        title: The page's title.
        max_details: How many requests get their tables in the page (the timeline shows
            all of them). Beyond it, requests that blocked the loop or failed come first,
            then the slowest.
        detail: ``"all"`` (``--all``) for every row of each execution table and every
            tracker column; a long request is folded by default, as in the terminal.

    Returns:
        The HTML document.

    .. versionadded:: 0.1
    """
    ordered = sorted([traces] if isinstance(traces, Trace) else traces, key=lambda t: t.start_ns)
    lanes = timeline_lanes(ordered)
    steps = [execution_steps(trace, detail=detail) for trace in ordered]
    detailed = _detailed(ordered, max(max_details, 0))
    count = len(ordered)
    stats: list[tuple[str, str, str]] = [
        (str(count), "request" if count == 1 else "requests", ""),
    ]
    body: list[str] = []
    if ordered:
        origin = min(t.start_ns for t in ordered)
        span = max(t.end_ns for t in ordered) - origin
        blocked = sum(1 for t in ordered if t.blocking())
        failed = sum(1 for t in ordered if t.outcome != "completed")
        stats.append((fmt_duration(span), "time span", ""))
        stats.append((fmt_duration(max(t.duration_ns for t in ordered)), "slowest", ""))
        stats.append((str(blocked), "blocked the loop", "bad" if blocked else ""))
        stats.append((str(failed), "not completed", "bad" if failed else ""))
        started = _started(ordered[0])
        if started:
            stats.append((started, "first arrival", ""))
        body.append(timeline_html(ordered, steps, lanes))
        body.append('<div class="selection" id="selection" aria-live="polite"></div>')
        body.extend(
            _request_html(n, trace, steps[n - 1], detail)
            for n, trace in enumerate(ordered, 1)
            if n - 1 in detailed
        )
        body.append(
            '<section class="card" id="req-missing" hidden><div class="empty">This report'
            f" includes the tables of {len(detailed)} of its {count} requests;"
            " this one is only in the timeline.</div></section>"
        )
        if len(detailed) < count:
            body.append(
                f'<p class="note" id="cap-note">Tables are included for {len(detailed)} of'
                f" {count} requests (the limit is {max_details}): those that blocked the loop"
                " or did not complete first, then the slowest. Every request is in the"
                " timeline.</p>"
            )
    else:
        body.append('<section class="card"><div class="empty">No traces to show.</div></section>')
    stats_html = "".join(
        f'<div class="stat {cls}"><b>{esc(value)}</b><span>{esc(label)}</span></div>'
        for value, label, cls in stats
    )
    data = {
        "generator": f"asgitrace {__version__}",
        "states": STATE_NAMES,
        "requests": [
            {
                "n": n,
                "id": t.id,
                "method": method_of(t),
                "path": t.path,
                "status": t.status,
                "outcome": t.outcome,
                "duration_ns": t.duration_ns,
                "duration": fmt_duration(t.duration_ns),
                "detail": n - 1 in detailed,
            }
            for n, t in enumerate(ordered, 1)
        ],
    }
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="asgitrace {esc(__version__)}">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        '<header class="top"><div class="wrap"><div class="brand"><span class="logo"></span>'
        f'<div><h1>{esc(title)}</h1><div class="sub">what the event loop did, per request'
        f'</div></div></div><div class="stats">{stats_html}</div></div></header>'
        f'<main class="wrap">{"".join(body)}</main>'
        f"<footer>asgitrace {esc(__version__)} · a self-contained page: it loads nothing"
        " from the network</footer>"
        '<script type="application/json" id="asgitrace-data">'
        f"{_json_for_script(data)}</script>"
        f"<script>{_JS}</script></body></html>\n"
    )


def write_html(
    traces: Trace | Iterable[Trace],
    path: StrPath,
    *,
    title: str = "asgitrace report",
    max_details: int = MAX_DETAILS,
    detail: Detail = False,
) -> None:
    """Write `to_html` output to *path*, readable and writable by its owner only.

    The page is written to a temporary file beside *path* (mode ``0o600``) and then
    moved over it, so a reader never sees half a report and an existing file's looser
    permissions do not carry over.

    Args:
        traces: One finished trace or several, e.g. ``tracer.traces``.
        path: The ``.html`` file to write.
        title: The page's title.
        max_details: How many requests get their tables (see `to_html`).
        detail: ``"all"`` for every row (see `to_html`).

    .. versionadded:: 0.1
    """
    text = to_html(traces, title=title, max_details=max_details, detail=detail)
    target = os.fspath(path)
    fd, temp = tempfile.mkstemp(
        dir=os.path.dirname(target) or ".", prefix=".asgitrace-", suffix=".html.tmp"
    )
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
        os.replace(temp, target)
    except BaseException:
        os.unlink(temp)
        raise
