"""Capture, the hot path: the context var, `Recorder`, `Tracer`, the middleware, the coroutine
stepper, the task hook, the loop monitor and its watchdog, the await-chain walk and
``sys.monitoring``.

It writes raw records through the model (`asgitrace.trace`) and never imports the views.
"""

from __future__ import annotations

__all__: list[str] = []
