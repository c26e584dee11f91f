"""asgitrace: what the asyncio event loop really did while your ASGI app served a request.

The folders are the layers, and imports point downward only (import-linter holds it):
``capture`` (the hot path: middleware, stepper, task hook, loop monitor) and ``views``
(tables, timeline, markdown, HTML) sit side by side over ``trace`` (the model: events,
the codec of raw records, `Trace`), which sits over ``_support`` (log, errors, safe
reprs, redaction); ``export`` (JSON, JSON lines, Perfetto) reads traces and views. This
module, `testing`, `exporters` and `otel` are the faces users import; the pytest plugin
and the CLI are leaves: nothing here imports them, so ``import asgitrace`` never pulls in
pytest.
"""

from __future__ import annotations

from . import exporters, testing
from ._support import AsgiTraceError, Redactor, TraceOrderError
from ._version import __version__
from .capture import TraceMiddleware, Tracer, default_is_app_file, instrument
from .trace import Event, EventKind, TaskRef, Trace
from .views import (
    THEME,
    ExecutionTable,
    KeyMoments,
    Timeline,
    VariableTracker,
    explain,
    print_trace,
)

__all__ = [
    "AsgiTraceError",
    "Event",
    "EventKind",
    "ExecutionTable",
    "KeyMoments",
    "Redactor",
    "THEME",
    "TaskRef",
    "Timeline",
    "Trace",
    "TraceMiddleware",
    "TraceOrderError",
    "Tracer",
    "VariableTracker",
    "__version__",
    "default_is_app_file",
    "explain",
    "exporters",
    "instrument",
    "print_trace",
    "testing",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type | type(explain)) and _obj.__module__.startswith("asgitrace."):
        _obj.__module__ = "asgitrace"
del _name, _obj
