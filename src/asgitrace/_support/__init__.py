"""Support code every layer may use: the logger, errors, safe reprs, redaction, threads
that never make their starter wait, ASGI type aliases.

The bottom layer: it imports the standard library only.
"""

from __future__ import annotations

from ._errors import AsgiTraceError, TraceOrderError
from ._log import LOGGER, log_failure
from ._redact import REDACTED, Redactor
from ._safe import MAX_REPR, safe_repr
from ._threads import start_thread, wake
from ._types import ASGIApp, Clock, Message, Receive, Scope, Send

__all__ = [
    "LOGGER",
    "MAX_REPR",
    "REDACTED",
    "ASGIApp",
    "AsgiTraceError",
    "Clock",
    "Message",
    "Receive",
    "Redactor",
    "Scope",
    "Send",
    "TraceOrderError",
    "log_failure",
    "safe_repr",
    "start_thread",
    "wake",
]
