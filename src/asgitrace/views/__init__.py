"""Views, for people: text helpers, execution steps, the tracker, timeline, key moments,
the summary of many traces, rich renderables, markdown and HTML.

Pure functions of finished traces (`asgitrace.trace`); nothing here imports capture.
"""

from __future__ import annotations

from ._explain import explain
from ._html import to_html, write_html
from ._render import (
    THEME,
    ExecutionTable,
    KeyMoments,
    Timeline,
    VariableTracker,
    print_trace,
    render_trace,
)
from ._summary import SummaryView, printable, request_line, summarize, summary_markdown
from ._views import fmt_duration

__all__ = [
    "THEME",
    "ExecutionTable",
    "KeyMoments",
    "SummaryView",
    "Timeline",
    "VariableTracker",
    "explain",
    "fmt_duration",
    "print_trace",
    "printable",
    "render_trace",
    "request_line",
    "summarize",
    "summary_markdown",
    "to_html",
    "write_html",
]
