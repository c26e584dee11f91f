"""Capture, the hot path: the context var, `Recorder`, `Tracer`, the middleware, the coroutine
stepper, the task hook, the loop monitor and its watchdog, the await-chain walk and
``sys.monitoring``.

It writes raw records through the model's codec (`asgitrace.trace.codec`) and never
imports the views: a recorder closes into a self-contained record.
"""

from __future__ import annotations

from ._context import CURRENT, task_ref
from ._middleware import TraceMiddleware, instrument
from ._tracer import Tracer
from ._walk import default_is_app_file

__all__ = [
    "CURRENT",
    "TraceMiddleware",
    "Tracer",
    "default_is_app_file",
    "instrument",
    "task_ref",
]
