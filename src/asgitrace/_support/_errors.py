"""asgitrace's exceptions: one base class, specific subclasses with built messages."""

from __future__ import annotations

__all__ = ["AsgiTraceError", "TraceOrderError"]


class AsgiTraceError(Exception):
    """Base class of every error asgitrace raises on purpose."""


class TraceOrderError(AsgiTraceError, AssertionError):
    """A trace's events did not match the expected order.

    It is an `AssertionError`, so test runners report it as a failed assertion.
    """

    def __init__(self, expected: str, actual: str, detail: str = "") -> None:
        self.expected = expected
        self.actual = actual
        message = f"trace order mismatch\n  expected: {expected}\n  actual:   {actual}"
        if detail:
            message += f"\n  {detail}"
        super().__init__(message)
