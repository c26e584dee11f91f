"""The variable tracker: a state per execution-table row for the function, each await,
the response and the watched variables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._steps import Step, execution_steps
from ._text import NONE, UNKNOWN, is_sleep

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["Tracker", "variable_tracker"]


@dataclass(frozen=True, slots=True)
class Tracker:
    """The variable tracker: a state per row for each column where something changed."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]


def variable_tracker(trace: Trace, steps: Sequence[Step] | None = None) -> Tracker:
    """The variable tracker of *trace*: function state, each await, the response and
    any watched variables, after each step where one of them changed."""
    steps = list(steps) if steps is not None else execution_steps(trace)
    request = trace.task.name
    entered = trace.of_kind("entered")
    sync = bool(entered and entered[0].get("thread"))
    state_row = "function state" if sync else "async function state"
    names: list[str] = [state_row]
    state: dict[str, str] = {state_row: "Not started"}
    await_rows: list[str] = []
    for step in steps:
        if step.task == request and step.kind == "await" and step.target:
            label = f"await {step.target}"
            if label not in await_rows and len(await_rows) < 8:
                await_rows.append(label)
                state[label] = "Not called"
    names.extend(await_rows)
    names.append("response")
    state["response"] = NONE
    watched_names = _watched_names(trace)
    for name in watched_names:
        names.append(name)
        state[name] = UNKNOWN
    watched_values = _watched_by_step(trace, steps)
    has_returned = bool(trace.of_kind("returned"))

    snapshots: list[tuple[int, dict[str, str]]] = []
    previous_function_step: int | None = None
    for position, step in enumerate(steps):
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
        state.update(watched_values.get(step.number, {}))
        snapshots.append((step.number, dict(state)))
        if step.task == request and step.kind in ("entered", "resumed"):
            previous_function_step = position
    final = dict(state)
    if final[state_row] not in ("Failed", "Cancelled"):
        final[state_row] = "Completed" if trace.outcome != "cancelled" else "Cancelled"
    for name in await_rows:
        final[name] = "N/A"
    columns = ["Start"]
    values: list[dict[str, str]] = [
        {
            name: ("Not started" if name == state_row else _initial(name, await_rows))
            for name in names
        }
    ]
    for number, snap in snapshots:
        if snap != values[-1]:
            columns.append(f"After Step {number}")
            values.append(snap)
    # Drop the last "After Step" column when Final repeats it exactly.
    columns.append("Final")
    values.append(final)
    rows = tuple((name, tuple(v.get(name, UNKNOWN) for v in values)) for name in names)
    return Tracker(tuple(columns), rows)


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


def _watched_by_step(trace: Trace, steps: Sequence[Step]) -> dict[int, dict[str, str]]:
    """Watched snapshots keyed by the step number they belong to."""
    out: dict[int, dict[str, str]] = {}
    for e in trace.events:
        watched = e.get("watched")
        if not watched:
            continue
        offset = e.t_ns - trace.start_ns
        number = None
        for step in steps:
            if step.offset_ns <= offset and step.kind in (
                "await",
                "yield",
                "resumed",
                "entered",
                "returned",
            ):
                number = step.number
        if number is not None:
            out.setdefault(number, {}).update(watched)
    return out


# -- timeline ---------------------------------------------------------------------------
