"""The variable tracker: a state per execution-table row for the function, each await,
the response and the watched variables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._steps import Detail, Step, execution_steps
from ._text import NONE, UNKNOWN, fmt_duration, is_sleep, short_expression

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["MAX_AWAITS", "MAX_STEPS", "Tracker", "variable_tracker"]


MAX_STEPS: Final = 4
"""The most "After Step" columns the tracker shows by default (the tutorial has three)."""
MAX_AWAITS: Final = 3
"""The most await rows the tracker shows by default: those that waited longest."""


@dataclass(frozen=True, slots=True)
class Tracker:
    """The variable tracker: a state per row for each column where something changed.

    Attributes:
        columns: ``Start``, ``After Step N`` (or ``During Step N`` inside a folded
            wait) and ``Final``.
        rows: Each tracked name with its value in each column.
        note: What was left out to keep it small, and how to see it all (or ``""``).
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]
    note: str = ""


def _flatten(steps: Sequence[Step]) -> list[tuple[str, Step]]:
    """Every step a row stands for, with the column label a change after it gets."""
    out: list[tuple[str, Step]] = []
    for shown in steps:
        inner = shown.covers or (shown,)
        for position, step in enumerate(inner):
            during = shown.kind == "wait" and position < len(inner) - 1
            out.append((f"{'During' if during else 'After'} Step {shown.number}", step))
    return out


def _waits(flat: list[tuple[str, Step]], request: str) -> dict[str, tuple[int, int, str]]:
    """For each await expression of the request: (time waited, times, column of its
    longest wait)."""
    out: dict[str, tuple[int, int, str]] = {}
    longest: dict[str, int] = {}
    current: tuple[str, str] | None = None
    for column, step in flat:
        if step.task != request:
            continue
        if step.kind in ("await", "yield", "thread") and step.target:
            current = (f"await {step.target}", column)
            total, times, where = out.get(current[0], (0, 0, column))
            out[current[0]] = (total, times + 1, where)
        elif step.kind == "loop" and current is not None:
            label, where = current
            total, times, best = out[label]
            waited = step.duration_ns or 0
            if waited > longest.get(label, -1):
                longest[label], best = waited, where
            out[label] = (total + waited, times, best)
    return out


def variable_tracker(
    trace: Trace,
    steps: Sequence[Step] | None = None,
    *,
    detail: Detail = False,
    max_steps: int = MAX_STEPS,
    max_awaits: int = MAX_AWAITS,
) -> Tracker:
    """The variable tracker of *trace*: function state, the awaits, the response and
    any watched variables, after each step where one of them changed.

    By default it keeps the tutorial's shape on any endpoint: at most *max_steps*
    columns between Start and Final (entering, the longest waits, the return) and the
    *max_awaits* awaits that waited longest; `Tracker.note` says what was left out.
    ``detail="all"`` keeps every column and every await.
    """
    everything = detail is True or detail == "all"
    steps = list(steps) if steps is not None else execution_steps(trace, detail=detail)
    flat = _flatten(steps)
    request = trace.task.name
    entered = trace.of_kind("entered")
    sync = bool(entered and entered[0].get("thread"))
    state_row = "function state" if sync else "async function state"
    waits = _waits(flat, request)
    ranked = sorted(waits, key=lambda label: -waits[label][0])
    kept = set(ranked if everything else ranked[: max(max_awaits, 0)])
    await_rows = [label for label in waits if label in kept]
    left_out = [label for label in waits if label not in kept]
    names: list[str] = [state_row, *await_rows, "response"]
    state: dict[str, str] = {state_row: "Not started", "response": NONE}
    state.update(dict.fromkeys(await_rows, "Not called"))
    watched_names = _watched_names(trace)
    for name in watched_names:
        names.append(name)
        state[name] = UNKNOWN
    watched_values = _watched_by_step(trace, flat)
    has_returned = bool(trace.of_kind("returned"))

    snapshots: list[tuple[str, dict[str, str]]] = []
    previous_function_step: int | None = None
    for position, (column, step) in enumerate(flat):
        label = f"await {step.target}"
        if step.task == request:
            if step.kind == "entered":
                state[state_row] = "Running"
            elif step.kind in ("await", "yield", "thread"):
                state[state_row] = "Paused (awaiting)"
                if label in state:
                    if previous_function_step is not None:
                        # The expression was evaluated (called) in the step before the await.
                        prev_state = snapshots[previous_function_step][1]
                        if prev_state.get(label) == "Not called":
                            prev_state[label] = "Called"
                    state[label] = "Sleeping" if is_sleep(step.target) else "Pending"
            elif step.kind == "resumed":
                state[state_row] = "Resumed"
                for name in await_rows:
                    if state[name] in ("Pending", "Sleeping"):
                        state[name] = "Done"
            elif step.kind == "failed":
                state[state_row] = "Failed"
            elif step.kind == "cancelled":
                state[state_row] = "Cancelled"
        returned_value = step.output not in (NONE, UNKNOWN) and step.kind in (
            "resumed",
            "entered",
            "returned",
        )
        # Without a captured return value (before 3.12), the response is what was sent.
        body_sent = step.kind == "sent" and state["response"] == NONE and not has_returned
        if returned_value or body_sent:
            state["response"] = step.output
        state.update(watched_values.get(position, {}))
        snapshots.append((column, dict(state)))
        if step.task == request and step.kind in ("entered", "resumed"):
            previous_function_step = position
    final = dict(state)
    if final[state_row] not in ("Failed", "Cancelled"):
        final[state_row] = "Completed" if trace.outcome != "cancelled" else "Cancelled"
    for name in await_rows:
        final[name] = "N/A"
    start = {
        name: ("Not started" if name == state_row else _initial(name, await_rows)) for name in names
    }
    changes: list[tuple[str, dict[str, str]]] = []
    for column, snap in snapshots:
        if snap != (changes[-1][1] if changes else start):
            if changes and changes[-1][0] == column:
                changes[-1] = (column, snap)  # the state after a row, not inside it
            else:
                changes.append((column, snap))
    shown = changes
    if not everything and len(changes) > max_steps:
        shown = _pick(changes, state_row, waits, await_rows, max_steps)
    columns = ["Start", *(column for column, _ in shown), "Final"]
    values = [start, *(snap for _, snap in shown), final]
    rows = tuple(
        (_short_label(name, await_rows), tuple(v.get(name, UNKNOWN) for v in values))
        for name in names
    )
    return Tracker(tuple(columns), rows, _note(left_out, waits, len(changes) - len(shown)))


def _short_label(name: str, await_rows: list[str]) -> str:
    if name in await_rows:
        return "await " + short_expression(name.removeprefix("await "))
    return name


def _pick(
    changes: list[tuple[str, dict[str, str]]],
    state_row: str,
    waits: dict[str, tuple[int, int, str]],
    await_rows: list[str],
    limit: int,
) -> list[tuple[str, dict[str, str]]]:
    """The columns worth seeing, most wanted first: entering, the longest wait, the
    return (Final shows the response too), then the other long waits."""
    by_column = {column: i for i, (column, _) in enumerate(changes)}
    running = [i for i, (_, snap) in enumerate(changes) if snap[state_row] == "Running"]
    answered = [i for i, (_, snap) in enumerate(changes) if snap["response"] != NONE]
    waited: list[int] = []
    for label in sorted(await_rows, key=lambda label: -waits[label][0]):
        column = waits[label][2]
        if column in by_column:
            waited.append(by_column[column])
            after = column.replace("During", "After")
            if after in by_column:
                waited.append(by_column[after])
    wanted = [
        running[0] if running else 0,
        *waited[:1],
        answered[0] if answered else len(changes) - 1,
        *waited[1:],
    ]
    keep = sorted(list(dict.fromkeys(wanted))[:limit])
    return [changes[i] for i in keep]


def _note(left_out: list[str], waits: dict[str, tuple[int, int, str]], columns: int) -> str:
    parts: list[str] = []
    if left_out:
        times = sum(waits[label][1] for label in left_out)
        waited = sum(waits[label][0] for label in left_out)
        parts.append(
            f"{len(left_out)} await{'s' * (len(left_out) != 1)}"
            f" ({times} wait{'s' * (times != 1)}, {fmt_duration(waited)})"
        )
    if columns > 0:
        parts.append(f"{columns} step{'s' * (columns != 1)} that changed something")
    if not parts:
        return ""
    return f'Left out: {" and ".join(parts)}; detail="all" (--all) shows them all.'


def _initial(name: str, await_rows: list[str]) -> str:
    if name in await_rows:
        return "Not called"
    if name == "response":
        return NONE
    return UNKNOWN


_SNAPSHOT_KINDS: Final = frozenset({"await", "yield", "resumed", "entered", "returned"})


def _watched_names(trace: Trace) -> list[str]:
    seen: list[str] = []
    for e in trace.events:
        for name in e.get("watched") or {}:
            if name not in seen:
                seen.append(name)
    return seen


def _watched_by_step(trace: Trace, flat: list[tuple[str, Step]]) -> dict[int, dict[str, str]]:
    """Watched snapshots keyed by the position (in *flat*) of the step they belong to."""
    out: dict[int, dict[str, str]] = {}
    for e in trace.events:
        watched = e.get("watched")
        if not watched:
            continue
        offset = e.t_ns - trace.start_ns
        position = None
        for i, (_, step) in enumerate(flat):
            if step.offset_ns <= offset and step.kind in _SNAPSHOT_KINDS:
                position = i
        if position is not None:
            out.setdefault(position, {}).update(watched)
    return out


# -- timeline ---------------------------------------------------------------------------
