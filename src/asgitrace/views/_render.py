"""rich renderables of traces; the only module that imports rich.

Every renderable follows rich's console protocol and styles through theme names
(``asgitrace.blocked`` ...) with a built-in fallback, so a user's own `Console` (with
or without `THEME`) renders them; colour goes away by itself when the output is not a
terminal or ``NO_COLOR`` is set. ``ascii=True`` swaps box drawing and timeline glyphs
for plain ASCII.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.style import Style
from rich.table import Table
from rich.text import Text
from rich.theme import Theme

from ..trace import Event, EventKind, request_label
from ._steps import Detail, Step, execution_steps
from ._text import GAP, fit_widths, fmt_bytes, fmt_duration, short_expression
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

_STYLES: Final[Mapping[str, str]] = {
    "asgitrace.title": "bold",
    "asgitrace.blocked": "bold red",
    "asgitrace.failed": "bold red",
    "asgitrace.cancelled": "yellow",
    "asgitrace.disconnected": "yellow",
    "asgitrace.child": "magenta",
    "asgitrace.thread": "blue",
    "asgitrace.loop": "dim",
    "asgitrace.after": "dim italic",
    "asgitrace.awaited": "cyan",
    "asgitrace.running": "green",
    "asgitrace.awaiting": "cyan",
    "asgitrace.time": "dim",
    "asgitrace.approx": "dim italic",
}
THEME: Final = Theme(dict(_STYLES))
"""The default styles; pass ``Console(theme=asgitrace.THEME)`` or override any name."""


_CONTROL: Final = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code != 0x0A
}


def _t(text: str, style: Style | str = "") -> Text:
    """Text from a trace, shown literally: no rich markup, no terminal control characters.

    Paths, headers and reprs come from clients and apps; ``[red]`` or ``\\x1b[2J`` in
    them must not style or clear the reader's terminal.
    """
    return Text(text.translate(_CONTROL), style=style)


def _style(console: Console, name: str) -> Style:
    return console.get_style(f"asgitrace.{name}", default=_STYLES.get(f"asgitrace.{name}", ""))


def _box(ascii_only: bool, options: ConsoleOptions) -> box.Box:
    if ascii_only or options.ascii_only:
        return box.ASCII
    return box.SIMPLE_HEAD


def _heading(trace: Trace) -> str:
    method = request_label(trace)
    status = trace.status if trace.status is not None else "-"
    route = f" (route {trace.route})" if trace.route and trace.route != trace.path else ""
    return (
        f"{method} {trace.path}{route} → {status} in {fmt_duration(trace.duration_ns)}"
        f" · {trace.outcome}"
    )


def _ms(ns: int | None) -> str:
    return "" if ns is None else f"{ns / 1e6:.1f}"


class ExecutionTable:
    """The tutorial's execution table, from real execution: one row per step.

    Columns: Step, At (ms from arrival), Took (ms), Action, State Before, Awaited?,
    State After, Output. Blocked steps, child tasks, worker-thread work and work after
    the response are marked. Narrower than 120 columns the two states share a column;
    narrower than 100 the Awaited? column goes. ``rows=(first, last)`` shows only
    those steps; ``detail="all"`` every step (a long request is folded by default).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        trace: Trace,
        *,
        ascii: bool = False,
        detail: Detail = False,
        rows: tuple[int, int] | None = None,
    ) -> None:
        self.trace = trace
        self.ascii = ascii
        self.detail = detail
        self.rows = rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield _t(f"Execution table · {_heading(self.trace)}", _style(console, "title"))
        # The tutorial's six columns need ~120 cells; narrower, the two states share one
        # column ("before → after") and the duration joins the action; under 100 the
        # Awaited? column goes too (an awaited row's action says what it awaits).
        width = options.max_width
        wide = width >= 120
        awaited_column = width >= 100
        ascii_only = self.ascii or options.ascii_only
        arrow = " -> " if ascii_only else " → "
        steps = execution_steps(self.trace, detail=self.detail)
        total = len(steps)
        if self.rows is not None:  # only these rows (1-based, inclusive)
            first, last = max(self.rows[0], 1), min(self.rows[1], total)
            steps = steps[first - 1 : last]
        fixed: list[tuple[str, list[Text | str]]] = [("Step", []), ("At ms", [])]
        if wide:
            fixed.append(("Took", []))
        flexible: list[tuple[str, list[Text]]] = [("Action", [])]
        if wide:
            flexible += [("State Before", []), ("State After", [])]
        else:
            flexible.append((f"State Before{arrow}After", []))
        flexible.append(("Output", []))
        awaited_cells: list[Text | str] = []
        for step in steps:
            mark = step.mark
            style = _style(console, mark) if mark else Style.null()
            approx = ("~" if ascii_only else "≈") if step.approx else ""
            took = fmt_duration(step.duration_ns) if step.duration_ns is not None else ""
            action = _t(step.action, style)
            if mark == "blocked":
                action = _t(("!! " if ascii_only else "⚠ ") + step.action, style)
            elif mark == "after":
                action = _t("(after response) " + step.action, style)
            if not wide and took and mark != "blocked":
                action.append(f" [{took}]", style=_style(console, "time"))
            fixed[0][1].append(str(step.number))
            fixed[1][1].append(approx + _ms(step.offset_ns))
            if wide:
                fixed[2][1].append(took)
            awaited_cells.append(
                Text("Yes", style=_style(console, "awaited")) if step.awaited else "No"
            )
            flexible[0][1].append(action)
            if wide:
                flexible[1][1].append(_t(step.before))
                flexible[2][1].append(_t(step.after))
            else:
                flexible[1][1].append(_t(step.before + arrow + step.after))
            flexible[-1][1].append(_t(step.output))
        fixed_width = sum(
            max(len(name), *(len(str(cell)) for cell in cells)) for name, cells in fixed
        ) + (len("Awaited?") if awaited_column else 0)
        columns_fixed = len(fixed) + (1 if awaited_column else 0)
        room = width - fixed_width - GAP * columns_fixed
        header = [name for name, _ in flexible]
        weights = [3 if name == "Action" else 2 for name in header]
        if width < 160:  # a long await expression reads as name(…) rather than a tower
            flexible = [(name, [_shortened(c, steps) for c in cells]) for name, cells in flexible]
        widths = fit_widths(
            header,
            [[cells[i].plain for _, cells in flexible] for i in range(len(steps))],
            room,
            weights=weights,
        )
        table = Table(
            box=_box(self.ascii, options),
            show_edge=False,
            pad_edge=False,
            expand=widths is None and width <= 160,
        )
        table.add_column("Step", justify="right", no_wrap=True)
        table.add_column("At ms", justify="right", no_wrap=True, style=_style(console, "time"))
        if wide:
            table.add_column("Took", justify="right", no_wrap=True, style=_style(console, "time"))
        ratios = {"Action": 3, "Output": 2}
        order = [name for name, _ in flexible]
        names: list[str] = []
        for i, (name, _) in enumerate(flexible):
            if awaited_column and ((wide and name == "State After") or (not wide and i == 1)):
                names.append("Awaited?")
            names.append(name)
        cells_of: dict[str, list[Text]] = dict(flexible)
        width_of = dict(zip(order, widths, strict=True)) if widths is not None else {}
        for name in names:
            if name == "Awaited?":
                table.add_column(name, no_wrap=True)
            else:
                w = width_of.get(name)
                table.add_column(
                    name, ratio=None if w else ratios.get(name, 2), overflow="fold", width=w
                )
        for i in range(len(steps)):
            row: list[Text | str] = [cells[i] for _, cells in fixed]
            row.extend(awaited_cells[i] if n == "Awaited?" else cells_of[n][i] for n in names)
            table.add_row(*row)
        captions = []
        if self.rows is not None and len(steps) < total:
            captions.append(
                f"rows {steps[0].number}-{steps[-1].number} of {total}" if steps else ""
            )
        if self.trace.dropped:
            captions.append(f"{self.trace.dropped} event(s) dropped (max_events)")
        if any(captions):
            table.caption = "; ".join(c for c in captions if c)
        yield table


def _shortened(text: Text, steps: list[Step]) -> Text:
    """*text* with each long await expression of *steps* written ``name(…)``."""
    plain = text.plain
    for target in {x.target for step in steps for x in (*step.covers, step)}:
        if target in plain:
            short = short_expression(target)
            if short != target:
                plain = plain.replace(target, short)
    if plain == text.plain:
        return text
    return Text(plain, style=text.style)


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


def describe_event(event: Event) -> str:
    """A short human sentence for one raw event (used by the event table)."""
    f: Mapping[str, Any] = event.fields
    kind = event.kind
    if kind is EventKind.RECEIVED and "path" in f:
        version = f" HTTP/{f['http_version']}" if "http_version" in f else ""
        return f"{str(f.get('method', f.get('type', ''))).upper()} {f['path']}{version}"
    if kind in (EventKind.RECEIVED, EventKind.SENT, EventKind.DISCONNECTED):
        parts = [str(f.get("type", ""))]
        if "status" in f:
            parts.append(str(f["status"]))
        if "body_bytes" in f:
            parts.append(fmt_bytes(f["body_bytes"]))
        if "text_chars" in f:
            parts.append(f"{f['text_chars']} chars")
        if f.get("more_body"):
            parts.append("more to come")
        if "code" in f:
            parts.append(f"code {f['code']}")
        return ", ".join(parts)
    if kind is EventKind.AWAITING:
        where = f" at {f.get('function')} line {f.get('line')}" if f.get("function") else ""
        return f"{f.get('target')}{where}"
    if kind is EventKind.RESUMED:
        return f"waited {fmt_duration(f.get('waited_ns'))}, lag {fmt_duration(f.get('lag_ns'))}"
    if kind is EventKind.BLOCKED:
        return f"{fmt_duration(f.get('duration_ns'))} at line {f.get('line')}: {f.get('code')}"
    if kind is EventKind.FAILED:
        return f"{f.get('exception')}" + (f" after {f['status']}" if f.get("status") else "")
    if kind in (EventKind.COMPLETED, EventKind.CANCELLED):
        return f"status {f['status']}" if f.get("status") is not None else ""
    return ", ".join(f"{k}={v}" for k, v in f.items() if k not in ("stack", "file"))


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
