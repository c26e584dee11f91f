"""Matching a trace's events against an expected order.

The single matcher behind `Trace.assert_order` and `asgitrace.testing`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from .._support import TraceOrderError
from ._events import Event, EventKind

__all__ = [
    "Mismatch",
    "Pattern",
    "Step",
    "find_order",
    "match_event",
    "match_order",
    "mismatch_text",
    "pattern_text",
    "step_text",
]

Pattern: TypeAlias = "str | EventKind | tuple[str | EventKind, Any]"
"""What one event must look like.

* A kind: ``"awaiting"`` or ``EventKind.AWAITING``.
* A kind and a value found in one of the event's fields: ``("awaiting", "asyncio.sleep")``,
  ``("entered", "wait_endpoint")``, ``("received", "/wait")``, ``("sent", 200)``. A text
  matches a field that equals it or contains it; any other value must equal a field.
* A kind and a mapping of field names to values, all of which must match that very
  field, the same way: ``("sent", {"status": 200})``,
  ``("awaiting", {"function": "wait_endpoint", "cooperative": False})``.
"""

Step: TypeAlias = "Pattern | set[Pattern] | frozenset[Pattern]"
"""One expected step: a pattern, or a set of patterns whose events happen in any order.

A set holds distinct patterns (``{"sent", "sent"}`` is ``{"sent"}``): tell events of the
same kind apart by a value, as in ``{("spawned", "fetch_a"), ("spawned", "fetch_b")}``.
"""


def _kind_of(pattern: Pattern) -> str:
    kind = pattern[0] if isinstance(pattern, tuple) else pattern
    return kind.value if isinstance(kind, EventKind) else str(kind)


def pattern_text(pattern: Pattern) -> str:
    """Describe *pattern* for a failure message: ``awaiting('asyncio.sleep')``."""
    if not isinstance(pattern, tuple):
        return _kind_of(pattern)
    wanted = pattern[1]
    if isinstance(wanted, Mapping):
        inner = ", ".join(f"{key}={value!r}" for key, value in wanted.items())
        return f"{_kind_of(pattern)}({inner})"
    return f"{_kind_of(pattern)}({wanted!r})"


def step_text(step: Step) -> str:
    """Describe *step* for a failure message; a set is shown sorted, in braces."""
    if isinstance(step, set | frozenset):
        return "{" + ", ".join(sorted(pattern_text(p) for p in step)) + "}"
    return pattern_text(step)


def _value_matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, str):
        return isinstance(value, str) and wanted in value
    # ``True == 1``: a flag must not match a number, nor a number a flag.
    if isinstance(value, bool) is not isinstance(wanted, bool):
        return False
    try:
        return bool(value == wanted)
    except Exception:  # a field whose __eq__ raises simply does not match
        return False


def match_event(event: Event, pattern: Pattern) -> bool:
    """Return whether *event* matches *pattern* (see `Pattern`).

    A text matches when it equals a field's value or is contained in a field's text,
    so ``("awaiting", "asyncio.sleep")`` matches a target ``asyncio.sleep(1)``.
    """
    if event.kind.value != _kind_of(pattern):
        return False
    if not isinstance(pattern, tuple):
        return True
    wanted = pattern[1]
    fields = event.fields
    if isinstance(wanted, Mapping):
        return all(
            name in fields and _value_matches(fields[name], value) for name, value in wanted.items()
        )
    return any(_value_matches(value, wanted) for value in fields.values())


def _check_known(steps: Iterable[Step]) -> None:
    known = {k.value for k in EventKind}
    for step in steps:
        for pattern in step if isinstance(step, set | frozenset) else (step,):
            if _kind_of(pattern) not in known:
                raise ValueError(
                    f"unknown event kind {_kind_of(pattern)!r}; known kinds: "
                    + ", ".join(sorted(known))
                )


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Where events stopped matching the expected steps.

    Attributes:
        step: Index of the step that found no match; ``len(steps)`` when every step
            matched but, with ``exact=True``, events were left over.
        start: Index of the first event that step could use (the events before it were
            taken by the earlier steps).
        extra: How many events were left over after the last step (``exact=True``).
    """

    step: int
    start: int
    extra: int = 0


def _augment(
    event: int, candidates: dict[int, list[int]], owner: dict[int, int], seen: set[int]
) -> bool:
    """Kuhn's augmenting path: give *event* a pattern, moving others along if needed."""
    for pattern in candidates[event]:
        if pattern in seen:
            continue
        seen.add(pattern)
        if pattern not in owner or _augment(owner[pattern], candidates, owner, seen):
            owner[pattern] = event
            return True
    return False


def _match_set(
    events: Sequence[Event], start: int, group: Sequence[Pattern], exact: bool
) -> int | None:
    """Return where the events matching *group* (each pattern its own event) end.

    A bipartite matching, so that overlapping patterns (``"sent"`` and ``("sent", 200)``)
    never take an event another pattern needs, whatever the set's iteration order. It
    ends as early as possible, which leaves the most events to the steps after it. With
    *exact*, the next ``len(group)`` events must be matched one to one.
    """
    stop = start + len(group) if exact else len(events)
    if stop > len(events):
        return None
    candidates: dict[int, list[int]] = {}
    owner: dict[int, int] = {}
    for pos in range(start, stop):
        candidates[pos] = [i for i, p in enumerate(group) if match_event(events[pos], p)]
        if _augment(pos, candidates, owner, set()):
            if len(owner) == len(group):
                return pos + 1
        elif exact:
            return None
    return None


def match_order(
    events: Sequence[Event], steps: Sequence[Step], *, exact: bool = False
) -> Mismatch | None:
    """Match *events* against *steps*; return ``None``, or where they stopped matching.

    By default the steps must appear as a subsequence (other events may come between);
    with ``exact=True`` the events must be exactly the steps. A set of patterns matches
    one event per pattern, in any order.

    Raises:
        ValueError: a pattern names a kind that does not exist.
    """
    _check_known(steps)
    pos = 0
    for index, step in enumerate(steps):
        if isinstance(step, set | frozenset):
            end = _match_set(events, pos, list(step), exact) if step else pos
        elif exact:
            end = pos + 1 if pos < len(events) and match_event(events[pos], step) else None
        else:
            end = next(
                (i + 1 for i in range(pos, len(events)) if match_event(events[i], step)), None
            )
        if end is None:
            return Mismatch(index, pos)
        pos = end
    if exact and pos != len(events):
        return Mismatch(len(steps), pos, extra=len(events) - pos)
    return None


def find_order(events: Sequence[Event], steps: Sequence[Step], *, exact: bool = False) -> None:
    """Raise `TraceOrderError` unless *events* match *steps* (see `match_order`).

    Raises:
        TraceOrderError: with the expected steps, the actual kinds and the first step
            that could not be matched.
        ValueError: a pattern names a kind that does not exist.
    """
    mismatch = match_order(events, steps, exact=exact)
    if mismatch is not None:
        raise TraceOrderError(
            ", ".join(step_text(s) for s in steps),
            ", ".join(e.kind.value for e in events),
            mismatch_text(steps, mismatch),
        )


def mismatch_text(steps: Sequence[Step], mismatch: Mismatch) -> str:
    """The one-line reason of a mismatch: which step found no match, or what was left."""
    if mismatch.extra:
        return f"{mismatch.extra} more event(s) after the last expected step"
    return f"no match for step {mismatch.step + 1}: {step_text(steps[mismatch.step])}"
