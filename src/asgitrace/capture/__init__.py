"""Capture, the hot path: the context var, `Recorder`, `Tracer`, the middleware, the coroutine
stepper, the task hook, the loop monitor and its watchdog, the await-chain walk and
``sys.monitoring``.

It writes raw records through the model's codec (`asgitrace.trace.codec`) and never
imports the views: a recorder closes into a self-contained record.

`COMPILED` says whether the stepper, the hot path, runs compiled (Cython) or as pure
Python (``capture/_accel.py`` chooses; ``asgitrace --version`` shows it).
"""

from __future__ import annotations

from ._accel import COMPILED
from ._context import CURRENT, task_ref
from ._middleware import TraceMiddleware, instrument
from ._tracer import Tracer
from ._walk import default_is_app_file

__all__ = [
    "COMPILED",
    "CURRENT",
    "TraceMiddleware",
    "Tracer",
    "default_is_app_file",
    "instrument",
    "task_ref",
]
