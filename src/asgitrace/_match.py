"""Matching a trace's events against an expected order (used by `Trace.assert_order`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

from ._errors import TraceOrderError
from ._events import Event, EventKind

__all__ = ["Pattern", "Step", "find_order", "match_event", "pattern_text"]

Pattern: TypeAlias = "str | EventKind | tuple[str | EventKind, Any]"
"""A kind (``"awaiting"``), or a kind and a text found in one of the event's fields
(``("awaiting", "asyncio.sleep")``, ``("sent", 200)``)."""

Step: TypeAlias = "Pattern | set[Pattern] | frozenset[Pattern]"
"""One expected step: a pattern, or a set of patterns that happen in any order."""


def _kind_of(pattern: Pattern) -> str:
    kind = pattern[0] if isinstance(pattern, tuple) else pattern
    return kind.value if isinstance(kind, EventKind) else str(kind)


def pattern_text(pattern: Pattern) -> str:
    """Describe *pattern* for a failure message."""
    if isinstance(pattern, tuple):
        return f"{_kind_of(pattern)}({pattern[1]!r})"
    return _kind_of(pattern)


def _step_text(step: Step) -> str:
    if isinstance(step, set | frozenset):
        return "{" + ", ".join(sorted(pattern_text(p) for p in step)) + "}"
    return pattern_text(step)


def match_event(event: Event, pattern: Pattern) -> bool:
    """Return whether *event* matches *pattern*.

    A text matches when it equals a field's value or is contained in a field's text,
    so ``("awaiting", "asyncio.sleep")`` matches a target ``asyncio.sleep(1)``.
    """
    if event.kind.value != _kind_of(pattern):
        return False
    if not isinstance(pattern, tuple):
        return True
    wanted = pattern[1]
    for value in event.fields.values():
        if value == wanted:
            return True
        if isinstance(wanted, str) and isinstance(value, str) and wanted in value:
            return True
    return False


def _check_known(steps: Iterable[Step]) -> None:
    known = {k.value for k in EventKind}
    for step in steps:
        for pattern in step if isinstance(step, set | frozenset) else (step,):
            if _kind_of(pattern) not in known:
                raise ValueError(
                    f"unknown event kind {_kind_of(pattern)!r}; known kinds: "
                    + ", ".join(sorted(known))
                )


def find_order(events: Sequence[Event], steps: Sequence[Step], *, exact: bool = False) -> None:
    """Raise `TraceOrderError` unless *events* match *steps*.

    By default the steps must appear as a subsequence (other events may come between);
    with ``exact=True`` the events must be exactly the steps. A set of patterns matches
    its events in any order.

    Raises:
        TraceOrderError: with the expected steps, the actual kinds and the first step
            that could not be matched.
        ValueError: a pattern names a kind that does not exist.
    """
    _check_known(steps)
    pos = 0
    for index, step in enumerate(steps):
        group = list(step) if isinstance(step, set | frozenset) else [step]
        while group:
            if pos >= len(events) or (
                exact and not any(match_event(events[pos], p) for p in group)
            ):
                _fail(events, steps, index)
            hit = next((p for p in group if match_event(events[pos], p)), None)
            if hit is not None:
                group.remove(hit)
            pos += 1
    if exact and pos != len(events):
        _fail(events, steps, len(steps), extra=len(events) - pos)


def _fail(events: Sequence[Event], steps: Sequence[Step], index: int, extra: int = 0) -> None:
    expected = ", ".join(_step_text(s) for s in steps)
    actual = ", ".join(e.kind.value for e in events)
    if extra:
        detail = f"{extra} more event(s) after the last expected step"
    else:
        detail = f"no match for step {index + 1}: {_step_text(steps[index])}"
    raise TraceOrderError(expected, actual, detail)
