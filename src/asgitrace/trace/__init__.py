"""The trace model: events, task refs, code ids, the codec of raw events, source lines,
`Trace` and order matching.

It imports `asgitrace._support` only. Capture writes raw records through `codec`'s
encoders; views and exporters read finished `Trace` objects. The one upward tie is
`Trace.__rich__`, which imports its renderer from `asgitrace.views` when a trace is drawn.
"""

from __future__ import annotations

from ._events import TERMINAL_KINDS, Event, EventKind, TaskRef
from ._match import Mismatch, Pattern, Step, match_order, mismatch_text, step_text
from ._source import source_line
from ._trace import SCHEMA_VERSION, RawEvent, Trace, request_label

__all__ = [
    "SCHEMA_VERSION",
    "TERMINAL_KINDS",
    "Event",
    "EventKind",
    "Mismatch",
    "Pattern",
    "RawEvent",
    "Step",
    "TaskRef",
    "Trace",
    "match_order",
    "mismatch_text",
    "request_label",
    "source_line",
    "step_text",
]
