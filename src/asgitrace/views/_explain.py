"""`explain(trace)`: a markdown page shaped like the tutorial, written from the trace."""

from __future__ import annotations

import inspect
import linecache
from typing import TYPE_CHECKING

from ..trace import request_label
from ._markdown import md_table
from ._steps import Detail, execution_steps
from ._text import fmt_duration, short_name, short_path
from ._timeline import key_moments
from ._tracker import variable_tracker

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["explain"]


def _source(trace: Trace) -> list[str]:
    entered = trace.of_kind("entered")
    if not entered or not entered[0].get("file"):
        return []
    file, first = entered[0].get("file"), entered[0].get("line")
    lines = linecache.getlines(file)
    if not lines or not first:
        return []
    try:
        block = inspect.getblock(lines[first - 1 :])
    except Exception:  # pragma: no cover - tokenizer edge cases
        block = lines[first - 1 : first + 20]
    # Include the decorators above the def (e.g. @app.get("/wait")).
    start = first - 1
    while start > 0 and lines[start - 1].lstrip().startswith("@"):
        start -= 1
    text = "".join(lines[start : first - 1]) + "".join(block)
    indent = min((len(x) - len(x.lstrip()) for x in text.splitlines() if x.strip()), default=0)
    body = "\n".join(x[indent:] for x in text.rstrip().splitlines())
    return [f"`{short_path(file)}`, line {first}:", "", "```python", body, "```", ""]


def explain(trace: Trace, *, detail: Detail = False) -> str:
    """Return a markdown page explaining what the event loop did for *trace*.

    The page follows the tutorial: the concept flow of this request, the endpoint's
    source, the execution table, the variable tracker and the key moments. Every line
    comes from the trace. ``detail="all"`` (``--all``) lists every row and tracker
    column, as it does for the terminal tables; a long request is folded by default.

    .. versionadded:: 0.1
    """
    method = request_label(trace)
    entered = trace.of_kind("entered")
    endpoint = short_name(entered[0].get("function")) if entered else "the app"
    title = f"# What happened during {method} {trace.path}"
    summary = (
        f"{method} {trace.path} was served by `{endpoint}` in {fmt_duration(trace.duration_ns)}"
        f" and ended **{trace.outcome}**"
        + (f" with HTTP {trace.status}" if trace.status is not None else "")
        + "."
    )
    steps = execution_steps(trace, detail=detail)
    lines = [title, "", summary, "", "## Concept flow", ""]
    lines.extend(f"{s.number}. {s.action}" for s in steps)
    lines.append("")
    source = _source(trace)
    if source:
        lines.extend(["## The endpoint", "", *source])
    lines.extend(["## Execution table", ""])
    lines.extend(
        md_table(
            ["Step", "At", "Action", "State Before", "Awaited?", "State After", "Output"],
            [
                [
                    str(s.number),
                    ("≈" if s.approx else "") + fmt_duration(s.offset_ns),
                    s.action,
                    s.before,
                    "Yes" if s.awaited else "No",
                    s.after,
                    s.output,
                ]
                for s in steps
            ],
        )
    )
    tracker = variable_tracker(trace, steps, detail=detail)
    lines.extend(["", "## Variable tracker", ""])
    lines.extend(
        md_table(["Variable", *tracker.columns], [[name, *values] for name, values in tracker.rows])
    )
    lines.extend(["", "## Key moments", ""])
    lines.extend(f"- {m}" for m in key_moments(trace))
    if any(s.approx for s in steps):
        lines.extend(
            [
                "",
                "_≈ marks a time derived from the next observation, not observed itself"
                " (exact entry times need Python 3.12+)._",
            ]
        )
    return "\n".join(lines) + "\n"
