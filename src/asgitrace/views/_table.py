"""The execution table as a rich renderable, wide (the tutorial's columns) or narrow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.padding import Padding
from rich.style import Style
from rich.table import Table
from rich.text import Text

from ._look import _box, _heading, _ms, _style, _t
from ._steps import Detail, Step, execution_steps
from ._text import GAP, fit_widths, fmt_duration, short_expression

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["ExecutionTable"]


class ExecutionTable:
    """The tutorial's execution table, from real execution: one row per step.

    Columns: Step, At (ms from arrival), Took (ms), Action, State Before, Awaited?,
    State After, Output. Blocked steps, child tasks, worker-thread work and work after
    the response are marked. Narrower than 120 columns the columns merge rather than
    wrap into towers: each step's action takes one line, its states ("before →
    after") an indented line under it, the duration and "awaited" join the action.
    ``rows=(first, last)`` shows only those steps; ``detail="all"`` every step (a long
    request is folded by default).

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
        steps = execution_steps(self.trace, detail=self.detail)
        total = len(steps)
        if self.rows is not None:  # only these rows (1-based, inclusive)
            first, last = max(self.rows[0], 1), min(self.rows[1], total)
            steps = steps[first - 1 : last]
        look = _Look(console, ascii_only=self.ascii or options.ascii_only)
        # The tutorial's columns need ~120 cells; narrower, one word a line is no table.
        wide = _wide_table(steps, look, options) if options.max_width >= 120 else None
        table = wide if wide is not None else _narrow_table(steps, look, options)
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


class _Look:
    """How this console draws a step: its styles and whether it is ASCII only."""

    def __init__(self, console: Console, *, ascii_only: bool) -> None:
        self.console = console
        self.ascii_only = ascii_only
        self.arrow = " -> " if ascii_only else " → "

    def style(self, name: str) -> Style:
        return _style(self.console, name) if name else Style.null()

    def at(self, step: Step) -> str:
        approx = ("~" if self.ascii_only else "≈") if step.approx else ""
        return approx + _ms(step.offset_ns)

    def action(self, step: Step) -> Text:
        style = self.style(step.mark)
        if step.mark == "blocked":
            return _t(("!! " if self.ascii_only else "⚠ ") + step.action, style)
        if step.mark == "after":
            return _t("(after response) " + step.action, style)
        return _t(step.action, style)

    def box(self, options: ConsoleOptions) -> box.Box:
        return box.ASCII if self.ascii_only else _box(False, options)


def _took(step: Step) -> str:
    return fmt_duration(step.duration_ns) if step.duration_ns is not None else ""


def _flexible_widths(
    header: list[str], columns: list[list[Text]], room: int, weights: list[int]
) -> list[int] | None:
    """Widths for the wrapping columns (cells given column by column), or ``None``."""
    rows = [[column[i].plain for column in columns] for i in range(len(columns[0]))]
    return fit_widths(header, rows, room, weights=weights)


def _fixed_room(width: int, fixed: list[tuple[str, list[str]]]) -> int:
    """What is left for the wrapping columns once the one-line ones have their width."""
    used = sum(max(len(name), *(len(cell) for cell in cells)) for name, cells in fixed)
    return width - used - GAP * len(fixed)


MIN_ACTION: Final = 22
"""The narrowest Action column of the wide table; narrower, the narrow layout reads better."""


def _wide_table(steps: list[Step], look: _Look, options: ConsoleOptions) -> Table | None:
    """The tutorial's eight columns, for a console of 120 cells or more; ``None`` when
    they would squeeze the action into a tower (a long place in the states, say) on a
    console under 160 cells, where the narrow layout says the same in fewer lines."""
    width = options.max_width
    fixed = [
        ("Step", [str(step.number) for step in steps]),
        ("At ms", [look.at(step) for step in steps]),
        ("Took", [_took(step) for step in steps]),
        ("Awaited?", ["Yes" if step.awaited else "No" for step in steps]),
    ]
    header = ["Action", "State Before", "State After", "Output"]
    columns = [
        [look.action(step) for step in steps],
        [_t(step.before) for step in steps],
        [_t(step.after) for step in steps],
        [_t(step.output) for step in steps],
    ]
    if width < 160:  # a long await expression reads as name(…) rather than a tower
        columns = [[_shortened(cell, steps) for cell in column] for column in columns]
    room = _fixed_room(width, fixed)
    widths = _flexible_widths(header, columns, room, [3, 2, 2, 2]) if steps else None
    if steps and width < 160 and (widths is None or widths[0] < MIN_ACTION):
        return None
    table = Table(
        box=look.box(options),
        show_edge=False,
        pad_edge=False,
        expand=widths is None and width <= 160,
    )
    table.add_column("Step", justify="right", no_wrap=True)
    table.add_column("At ms", justify="right", no_wrap=True, style=look.style("time"))
    table.add_column("Took", justify="right", no_wrap=True, style=look.style("time"))
    width_of = dict(zip(header, widths, strict=True)) if widths is not None else {}
    for name in ("Action", "State Before", "Awaited?", "State After", "Output"):
        if name == "Awaited?":
            table.add_column(name, no_wrap=True)
            continue
        w = width_of.get(name)
        ratio = None if w else {"Action": 3}.get(name, 2)
        table.add_column(name, ratio=ratio, overflow="fold", width=w)
    for i, step in enumerate(steps):
        awaited: Text | str = Text("Yes", style=look.style("awaited")) if step.awaited else "No"
        action, before, after, output = (column[i] for column in columns)
        table.add_row(*(cells[i] for _, cells in fixed[:3]), action, before, awaited, after, output)
    return table


def _narrow_action(step: Step, look: _Look) -> Text:
    """The action's line of a narrow row, with the Took and Awaited? columns merged in:
    ``Await asyncio.sleep(1) [awaited 1.000 s]``, ``Resume … [2.0 ms]``."""
    action = look.action(step)
    took = _took(step) if step.mark != "blocked" else ""  # a block says its duration
    note = " ".join(part for part in ("awaited" if step.awaited else "", took) if part)
    if note:
        action.append(f" [{note}]", style=look.style("awaited" if step.awaited else "time"))
    return action


def _narrow_widths(actions: list[Text], outputs: list[Text], room: int) -> tuple[int, int] | None:
    """The Action and Output widths of a narrow table, or ``None`` when no word fits.

    The action and its states are what a reader follows, so Output gets no more than a
    third of the room (at least its longest word), and Action all the rest.
    """

    def longest_word(cells: list[Text]) -> int:
        return max(len(word) for cell in cells for word in cell.plain.split() or [""])

    output = min(
        max(len(cell.plain) for cell in outputs),
        max(longest_word(outputs), len("Output"), room // 3),
    )
    action = min(room - output, max(len(cell.plain) for cell in actions))
    if action < max(longest_word(actions), len("State Before → After") + 2):
        return None
    return action, output


def _narrow_table(steps: list[Step], look: _Look, options: ConsoleOptions) -> Table:
    """Step, At ms, Action (its states indented under it) and Output, under 120 cells.

    The states merge into the action's cell rather than taking columns of their own:
    at 80 cells four text columns leave each about twelve cells, one word a line.
    """
    width = options.max_width
    fixed = [
        ("Step", [str(step.number) for step in steps]),
        ("At ms", [look.at(step) for step in steps]),
    ]
    actions = [_shortened(_narrow_action(step, look), steps) for step in steps]
    states = [_shortened(_t(step.before + look.arrow + step.after), steps) for step in steps]
    outputs = [_shortened(_t(step.output), steps) for step in steps]
    indent = 2
    # A merged cell is as wide as its longer line (the states line is indented).
    longer = [
        a if len(a) >= len(s) + indent else _t(" " * indent + s.plain)
        for a, s in zip(actions, states, strict=True)
    ]
    room = _fixed_room(width, fixed) - GAP
    widths = _narrow_widths(longer, outputs, room) if steps else None
    table = Table(box=look.box(options), show_edge=False, pad_edge=False, expand=widths is None)
    table.add_column("Step", justify="right", no_wrap=True)
    table.add_column("At ms", justify="right", no_wrap=True, style=look.style("time"))
    action_width, output_width = widths if widths is not None else (None, None)
    table.add_column(
        Text.assemble("Action\n", ("  State Before" + look.arrow + "After", "")),
        ratio=None if action_width else 3,
        width=action_width,
        overflow="fold",
    )
    table.add_column("Output", ratio=None if output_width else 1, width=output_width)
    for i in range(len(steps)):
        cell = Group(actions[i], Padding(states[i], (0, 0, 0, indent)))
        table.add_row(fixed[0][1][i], fixed[1][1][i], cell, outputs[i])
    return table


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
