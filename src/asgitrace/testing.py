"""Helpers for asserting what the event loop did, for any test framework (no pytest here).

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ._trace import Trace
from ._tracer import Tracer

__all__ = ["capture_traces"]


@contextmanager
def capture_traces(tracer: Tracer) -> Iterator[list[Trace]]:
    """Collect the traces *tracer* finishes inside the ``with`` block into a live list.

    The callback is removed when the block exits, even on error.
    """
    captured: list[Trace] = []
    tracer.add_callback(captured.append)
    try:
        yield captured
    finally:
        tracer.remove_callback(captured.append)
