"""The summary of many traces: latency percentiles, routes, the slowest requests, where
the loop was blocked; and the one-line view of a request.

`summarize` computes a rich-free `Summary`; `SummaryView` lays it out with rich and
`summary_markdown` as markdown. `request_line` is ``asgitrace serve``'s line per request.
Nothing here prints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rich.table import Table
from rich.text import Text

from ..trace import Trace, request_label
from ._look import _box, _style
from ._markdown import md_table
from ._stats import TraceStats, blocked_text, request_text, trace_stats, waits_text, where_text
from ._text import GAP, fit_widths, fmt_duration, printable

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

__all__ = ["Summary", "SummaryView", "summarize", "summary_markdown"]

SLOWEST: Final = 5
_PERCENTILES: Final = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))


@dataclass(frozen=True, slots=True)
class RouteStats:
    """Latency of one route (method and template, or path when no route matched)."""

    label: str
    count: int
    p50_ns: int
    p99_ns: int
    max_ns: int
    blocked: int


@dataclass(frozen=True, slots=True)
class BlockSpot:
    """One line of code that blocked the event loop, over all the traces."""

    where: str
    code: str
    count: int
    requests: int
    total_ns: int
    max_ns: int


@dataclass(frozen=True, slots=True)
class Summary:
    """What many traces say together.

    Attributes:
        count: How many traces.
        span_s: Wall time from the first arrival to the last end (seconds).
        elapsed_s: The client's own measure of the run, when known.
        statuses: ``(status, count)``, most frequent first (``"—"``: no response).
        outcomes: ``(outcome, count)`` for the requests that did not complete normally.
        latency: ``(name, ns)``: min, p50, p90, p99, max (nearest-rank percentiles).
        routes: Per route, slowest p99 first.
        slowest: The slowest traces with their stats, slowest first.
        blocking: Where the loop was blocked, most total time first.
        errors: Requests the client got no answer to.
    """

    count: int
    span_s: float
    elapsed_s: float | None
    statuses: tuple[tuple[str, int], ...]
    outcomes: tuple[tuple[str, int], ...]
    latency: tuple[tuple[str, int], ...]
    routes: tuple[RouteStats, ...]
    slowest: tuple[tuple[Trace, TraceStats], ...]
    blocking: tuple[BlockSpot, ...]
    errors: tuple[str, ...] = ()


def _percentile(sorted_ns: Sequence[int], q: float) -> int:
    return sorted_ns[max(math.ceil(q * len(sorted_ns)) - 1, 0)]


def _counts(items: Iterable[str]) -> tuple[tuple[str, int], ...]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def summarize(
    traces: Sequence[Trace],
    *,
    elapsed_s: float | None = None,
    errors: Sequence[str] = (),
    slowest: int = SLOWEST,
) -> Summary:
    """Summarize *traces* (at least one)."""
    durations = sorted(t.duration_ns for t in traces)
    latency = (
        ("min", durations[0]),
        *((name, _percentile(durations, q)) for name, q in _PERCENTILES),
        ("max", durations[-1]),
    )
    stats = {t.id: trace_stats(t) for t in traces}
    by_route: dict[str, list[Trace]] = {}
    for t in traces:
        by_route.setdefault(_label_route(t), []).append(t)
    routes = []
    for label, group in by_route.items():
        ns = sorted(t.duration_ns for t in group)
        blocked = sum(1 for t in group if stats[t.id].blocked_ns)
        routes.append(
            RouteStats(label, len(ns), _percentile(ns, 0.5), _percentile(ns, 0.99), ns[-1], blocked)
        )
    routes.sort(key=lambda r: (-r.p99_ns, r.label))
    spots: dict[tuple[str, str], list[int]] = {}
    spot_requests: dict[tuple[str, str], set[str]] = {}
    for t in traces:
        for b in t.blocking():
            key = (where_text(b.get("file"), b.get("line")), printable(str(b.get("code") or "?")))
            spots.setdefault(key, []).append(int(b.get("duration_ns") or 0))
            spot_requests.setdefault(key, set()).add(t.id)
    blocking = sorted(
        (
            BlockSpot(where, code, len(ns), len(spot_requests[where, code]), sum(ns), max(ns))
            for (where, code), ns in spots.items()
        ),
        key=lambda s: (-s.total_ns, s.where),
    )
    ranked = sorted(traces, key=lambda t: t.duration_ns, reverse=True)[:slowest]
    return Summary(
        count=len(traces),
        span_s=max(t.start + t.duration for t in traces) - min(t.start for t in traces),
        elapsed_s=elapsed_s,
        statuses=_counts("—" if t.status is None else str(t.status) for t in traces),
        outcomes=_counts(t.outcome for t in traces if t.outcome != "completed"),
        latency=latency,
        routes=tuple(routes),
        slowest=tuple((t, stats[t.id]) for t in ranked),
        blocking=tuple(blocking),
        errors=tuple(errors),
    )


def _label_route(trace: Trace) -> str:
    return printable(f"{request_label(trace)} {trace.route or trace.path}")


def _headline(summary: Summary) -> str:
    noun = "request" if summary.count == 1 else "requests"
    parts = [f"{summary.count} {noun}"]
    seconds = summary.elapsed_s if summary.elapsed_s is not None else summary.span_s
    if seconds > 0:
        parts[0] += f" in {seconds:.2f} s ({summary.count / seconds:.1f}/s)"
    statuses = ", ".join(f"{status} ({count})" for status, count in summary.statuses)
    parts.append(f"status {statuses}")
    if summary.outcomes:
        parts.append(", ".join(f"{count} {outcome}" for outcome, count in summary.outcomes))
    return " · ".join(parts)


def _latency(summary: Summary) -> str:
    return "   ".join(f"{name} {fmt_duration(ns)}" for name, ns in summary.latency)


def _no_blocking(threshold: float | None) -> str:
    if threshold is None:
        return "No step blocked the event loop."
    return f"No step blocked the event loop for {threshold * 1000:g} ms or more."


class SummaryView:
    """A `Summary` as rich renderables: headline, latency, routes, slowest, blocking."""

    def __init__(
        self, summary: Summary, *, blocking_threshold: float | None = None, ascii: bool = False
    ) -> None:
        self.summary = summary
        self.blocking_threshold = blocking_threshold
        self.ascii = ascii

    def _table(self, options: ConsoleOptions) -> Table:
        return Table(box=_box(self.ascii, options), show_edge=False, pad_edge=False)

    def _slowest(self, console: Console, options: ConsoleOptions) -> Table:
        """The slowest requests; a Blocked column only when one blocked, merged with
        Waits under 100 columns, and the text columns fitted to their words."""
        s = self.summary
        rows = [
            [
                trace.id,
                request_text(trace),
                "—" if trace.status is None else str(trace.status),
                fmt_duration(trace.duration_ns),
                waits_text(stats),
                blocked_text(stats) if stats.blocked_ns else "",
            ]
            for trace, stats in s.slowest
        ]
        header = ["Trace", "Request", "Status", "Took", "Waits", "Blocked"]
        if not any(row[5] for row in rows):
            header, rows = header[:5], [row[:5] for row in rows]
        elif options.max_width < 100:
            header = [*header[:4], "Waits / blocked"]
            rows = [[*row[:4], row[5] or row[4]] for row in rows]
        widths = self._fit(header, rows, options.max_width)
        if widths is None and options.max_width < 100:  # the id goes before a tower does
            header, rows = header[1:], [row[1:] for row in rows]
            widths = self._fit(header, rows, options.max_width)
        fixed = {"Trace", "Status", "Took"}
        table = self._table(options)
        time, blocked = _style(console, "time"), _style(console, "blocked")
        for i, name in enumerate(header):
            table.add_column(
                name,
                justify="right" if name in ("Status", "Took") else "left",
                no_wrap=name in fixed,
                overflow="fold",
                width=widths[i] if widths is not None and name not in fixed else None,
                style=time if name == "Took" else blocked if name == "Blocked" else "",
            )
        for row in rows:
            table.add_row(*row)
        return table

    @staticmethod
    def _fit(header: list[str], rows: list[list[str]], width: int) -> list[int] | None:
        """Widths for *header*'s columns (fixed ones at their longest) or ``None``."""
        flexible = [i for i, name in enumerate(header) if name not in ("Trace", "Status", "Took")]
        fixed = sum(
            max(len(header[i]), *(len(r[i]) for r in rows))
            for i in range(len(header))
            if i not in flexible
        )
        widths = fit_widths(
            [header[i] for i in flexible],
            [[row[i] for i in flexible] for row in rows],
            width - fixed - GAP * (len(header) - len(flexible)),
        )
        if widths is None:
            return None
        out = [0] * len(header)
        for i, w in zip(flexible, widths, strict=True):
            out[i] = w
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        s = self.summary
        title = _style(console, "title")
        yield Text("Summary · " + _headline(s), style=title)
        yield Text("Latency   " + _latency(s))
        for error in s.errors[:3]:
            yield Text("No answer: " + printable(error), style=_style(console, "failed"))
        if len(s.errors) > 3:
            yield Text(f"... and {len(s.errors) - 3} more requests without an answer")
        if len(s.routes) > 1:
            yield Text("")
            yield Text("Routes", style=title)
            table = self._table(options)
            for column in ("Route", "Requests", "p50", "p99", "max", "Blocked"):
                table.add_column(column, justify="left" if column == "Route" else "right")
            for r in s.routes:
                table.add_row(
                    r.label,
                    str(r.count),
                    fmt_duration(r.p50_ns),
                    fmt_duration(r.p99_ns),
                    fmt_duration(r.max_ns),
                    str(r.blocked) if r.blocked else "",
                )
            yield table
        yield Text("")
        yield Text("Slowest requests", style=title)
        yield self._slowest(console, options)
        yield Text("")
        yield Text("Blocking steps", style=title)
        if not s.blocking:
            yield Text(_no_blocking(self.blocking_threshold))
            return
        table = self._table(options)
        # Numbers never wrap; a long place gives way before the code does.
        table.add_column("Where", overflow="fold", ratio=3)
        code_width = min(16, max(len(spot.code) for spot in s.blocking))
        table.add_column("Code", overflow="fold", min_width=code_width, ratio=2)
        table.add_column("Times", justify="right", no_wrap=True)
        table.add_column("Requests", justify="right", no_wrap=True)
        table.add_column("Total", justify="right", no_wrap=True)
        table.add_column("Longest", justify="right", no_wrap=True)
        for spot in s.blocking:
            table.add_row(
                spot.where,
                spot.code,
                str(spot.count),
                str(spot.requests),
                fmt_duration(spot.total_ns),
                fmt_duration(spot.max_ns),
            )
        yield table


def summary_markdown(summary: Summary, *, blocking_threshold: float | None = None) -> str:
    """The same summary as a markdown section."""
    s = summary
    lines = ["# Summary", "", _headline(s), "", "Latency: " + _latency(s).replace("   ", ", ")]
    if s.errors:
        lines += ["", f"{len(s.errors)} requests got no answer; the first: {s.errors[0]}"]
    if len(s.routes) > 1:
        lines += ["", "## Routes", ""]
        lines += md_table(
            ("Route", "Requests", "p50", "p99", "max", "Blocked"),
            (
                (
                    f"`{r.label}`",
                    str(r.count),
                    fmt_duration(r.p50_ns),
                    fmt_duration(r.p99_ns),
                    fmt_duration(r.max_ns),
                    str(r.blocked),
                )
                for r in s.routes
            ),
        )
    lines += ["", "## Slowest requests", ""]
    lines += md_table(
        ("Trace", "Request", "Status", "Took", "Waits", "Blocked"),
        (
            (
                f"`{t.id}`",
                f"`{request_text(t)}`",
                "—" if t.status is None else str(t.status),
                fmt_duration(t.duration_ns),
                waits_text(st),
                blocked_text(st),
            )
            for t, st in s.slowest
        ),
    )
    lines += ["", "## Blocking steps", ""]
    if s.blocking:
        lines += md_table(
            ("Where", "Code", "Times", "Requests", "Total", "Longest"),
            (
                (
                    f"`{b.where}`",
                    f"`{b.code}`",
                    str(b.count),
                    str(b.requests),
                    fmt_duration(b.total_ns),
                    fmt_duration(b.max_ns),
                )
                for b in s.blocking
            ),
        )
    else:
        lines.append(_no_blocking(blocking_threshold))
    return "\n".join(lines) + "\n"
