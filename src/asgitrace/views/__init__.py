"""Views, for people: text helpers, execution steps, the tracker, timeline, key moments,
the summary of many traces, rich renderables, markdown and HTML.

Pure functions of finished traces (`asgitrace.trace`); nothing here imports capture.
"""

from __future__ import annotations

from ._describe import describe_event
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
from ._stats import TraceStats, request_line, trace_stats
from ._steps import Detail, Step, execution_steps
from ._summary import SummaryView, summarize, summary_markdown
from ._text import fmt_duration, place, printable, short_path
from ._timeline import Lane, key_moments, timeline_lanes
from ._tracker import Tracker, variable_tracker

__all__ = [
    "THEME",
    "Detail",
    "ExecutionTable",
    "KeyMoments",
    "Lane",
    "Step",
    "SummaryView",
    "Timeline",
    "TraceStats",
    "Tracker",
    "VariableTracker",
    "describe_event",
    "execution_steps",
    "explain",
    "fmt_duration",
    "key_moments",
    "place",
    "print_trace",
    "printable",
    "render_trace",
    "request_line",
    "short_path",
    "summarize",
    "summary_markdown",
    "timeline_lanes",
    "to_html",
    "trace_stats",
    "variable_tracker",
    "write_html",
]
