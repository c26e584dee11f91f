"""rich renderables of traces (with `_table`, the execution table, and `_look`, their styles).

Every renderable follows rich's console protocol and styles through theme names
(``asgitrace.blocked`` ...) with a built-in fallback, so a user's own `Console` (with
or without `THEME`) renders them; colour goes away by itself when the output is not a
terminal or ``NO_COLOR`` is set. ``ascii=True`` swaps box drawing and timeline glyphs
for plain ASCII.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.style import Style
from rich.table import Table
from rich.text import Text

from ._describe import describe_event
from ._look import THEME, _box, _heading, _style, _t
from ._steps import Detail, execution_steps
from ._table import ExecutionTable
from ._text import fit_widths, fmt_duration
from ._timeline import key_moments, timeline_lanes
from ._tracker import MAX_STEPS, variable_tracker

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ..trace import Trace

__all__ = [
    "THEME",
    "EventTable",
    "ExecutionTable",
    "KeyMoments",
    "Timeline",
    "VariableTracker",
    "describe_event",
    "print_trace",
    "render_events",
    "render_trace",
]


class VariableTracker:
    """The tutorial's variable tracker: each tracked value after each step that changed one.

    Rows: the function's state, the awaits that waited longest, the response, and the
    variables named in ``Tracer(watch=...)``. It keeps the tutorial's size on any
    endpoint (at most four columns between Start and Final, fewer when the console is
    narrow, never a word cut) and says what it left out; ``detail="all"`` shows it all.

    .. versionadded:: 0.1
    """

    def __init__(self, trace: Trace, *, ascii: bool = False, detail: Detail = False) -> None:
        self.trace = trace
        self.ascii = ascii
        self.detail = detail

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text("Variable tracker", style=_style(console, "title"))
        steps = execution_steps(self.trace, detail=self.detail)
        everything = self.detail is True or self.detail == "all"
        limits = [MAX_STEPS] if everything else list(range(MAX_STEPS, -1, -1))
        for limit in limits:
            tracker = variable_tracker(self.trace, steps, detail=self.detail, max_steps=limit)
            header = ["Variable", *tracker.columns]
            body = [[name, *values] for name, values in tracker.rows]
            widths = fit_widths(header, body, options.max_width)
            if widths is not None:
                break
        table = Table(box=_box(self.ascii, options), show_edge=False, pad_edge=False)
        for i, column in enumerate(header):
            width = widths[i] if widths is not None else None
            table.add_column(column, overflow="fold", width=width, min_width=width)
        for row in body:
            table.add_row(*(_t(value) for value in row))
        yield table
        if tracker.note:
            yield _t(tracker.note, _style(console, "time"))


class KeyMoments:
    """The few things about a trace worth noticing: blocks, long waits, lag, threads.

    .. versionadded:: 0.1
    """

    def __init__(self, trace: Trace, *, ascii: bool = False) -> None:
        self.trace = trace
        self.ascii = ascii

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text("Key moments", style=_style(console, "title"))
        bullet = "- " if self.ascii or options.ascii_only else "• "
        for moment in key_moments(self.trace):
            style = _style(console, "blocked") if moment.startswith("Blocked") else Style.null()
            yield _t(bullet + moment, style)


_GLYPHS: Final = {"running": "█", "awaiting": "─", "blocked": "▓", "after": "▒"}
_ASCII_GLYPHS: Final = {"running": "#", "awaiting": "-", "blocked": "X", "after": "+"}
_PRIORITY: Final = {"blocked": 4, "running": 3, "after": 2, "awaiting": 1}


class Timeline:
    """Several requests as swimlanes over one time axis: who ran while whom waited.

    .. versionadded:: 0.1
    """

    def __init__(self, traces: Iterable[Trace], *, ascii: bool = False) -> None:
        self.traces = list(traces)
        self.ascii = ascii

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lanes = timeline_lanes(self.traces)
        yield Text("Timeline", style=_style(console, "title"))
        if not lanes:
            yield Text("(no traces)")
            return
        ascii_only = self.ascii or options.ascii_only
        glyphs = _ASCII_GLYPHS if ascii_only else _GLYPHS
        origin = min(lane.start_ns for lane in lanes)
        end = max(lane.end_ns for lane in lanes)
        span = max(end - origin, 1)
        labels = [f"{i}. {lane.label}" for i, lane in enumerate(lanes, 1)]
        label_width = min(max(len(label) for label in labels), 28)
        width = max(options.max_width - label_width - 2, 10)
        for label, lane in zip(labels, lanes, strict=True):
            cells: list[str | None] = [None] * width
            for start, stop, state in lane.segments:
                first = int((start - origin) * width / span)
                last = max(int((stop - origin) * width / span), first + 1)
                for col in range(max(first, 0), min(last, width)):
                    current = cells[col]
                    if current is None or _PRIORITY[state] > _PRIORITY[current]:
                        cells[col] = state
            text = _t(label[:label_width].ljust(label_width) + "  ")
            for cell in cells:
                if cell is None:
                    text.append(" ")
                else:
                    text.append(glyphs[cell], style=_style(console, cell))
            yield text
        scale = Text(" " * (label_width + 2))
        left, right = "0", fmt_duration(span)
        scale.append(left + right.rjust(width - len(left)), style=_style(console, "time"))
        yield scale
        legend = Text(" " * (label_width + 2))
        for state, name in (
            ("running", "running"),
            ("awaiting", "awaiting"),
            ("blocked", "blocked the loop"),
            ("after", "after response"),
        ):
            legend.append(glyphs[state], style=_style(console, state))
            legend.append(f" {name}   ")
        yield legend


class EventTable:
    """The raw events of a trace: order, time, task, kind and details.

    .. versionadded:: 0.1
    """

    def __init__(self, trace: Trace, *, ascii: bool = False) -> None:
        self.trace = trace
        self.ascii = ascii

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        trace = self.trace
        yield _t(f"Events · {_heading(trace)}", _style(console, "title"))
        table = Table(box=_box(self.ascii, options), show_edge=False, pad_edge=False)
        table.add_column("#", justify="right")
        table.add_column("At ms", justify="right", style=_style(console, "time"))
        table.add_column("Task", overflow="fold")
        table.add_column("Event")
        table.add_column("Details", overflow="fold")
        for index, event in enumerate(trace.events, 1):
            table.add_row(
                str(index),
                f"{(event.t_ns - trace.start_ns) / 1e6:.3f}",
                _t(event.task.name),
                event.kind.value,
                _t(describe_event(event)),
            )
        yield table


def render_events(trace: Trace, *, ascii: bool = False) -> EventTable:
    """The raw events of *trace* as a table (every field, for debugging)."""
    return EventTable(trace, ascii=ascii)


def render_trace(trace: Trace, *, ascii: bool = False, detail: Detail = False) -> RenderableType:
    """The execution table, variable tracker and key moments of one trace (what
    `Trace.__rich__` and `print_trace` show); ``detail="all"`` shows every row."""
    return Group(
        ExecutionTable(trace, ascii=ascii, detail=detail),
        Text(""),
        VariableTracker(trace, ascii=ascii, detail=detail),
        Text(""),
        KeyMoments(trace, ascii=ascii),
    )


def print_trace(
    trace: Trace, console: Console | None = None, *, ascii: bool = False, detail: Detail = False
) -> None:
    """Print a trace's execution table, variable tracker and key moments.

    Args:
        trace: The trace.
        console: Where to print; a new terminal console with `THEME` by default.
        ascii: Use ASCII instead of box-drawing characters.
        detail: ``"all"`` for every row and tracker column (a long request is folded
            to about 15 rows by default).

    .. versionadded:: 0.1
    """
    (console or Console(theme=THEME)).print(render_trace(trace, ascii=ascii, detail=detail))
