"""The event vocabulary of a trace: data only, no behaviour beyond lookups."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["TERMINAL_KINDS", "Event", "EventKind", "TaskRef"]


class EventKind(str, enum.Enum):
    """What happened at one moment of a request.

    A `str` enum, so ``event.kind == "awaiting"`` works as well as
    ``event.kind is EventKind.AWAITING``.
    """

    RECEIVED = "received"
    """The scope entered the middleware, or the app received an ASGI message."""
    ENTERED = "entered"
    """The endpoint function started."""
    RETURNED = "returned"
    """The endpoint function returned (its value, redacted and bounded; 3.12+)."""
    AWAITING = "awaiting"
    """A coroutine of the request suspended on something that was not done."""
    YIELDED = "yielded"
    """The request's task gave control back to the event loop."""
    RESUMED = "resumed"
    """The request's task ran again."""
    SENT = "sent"
    """The app sent an ASGI message."""
    SPAWNED = "spawned"
    """A child task of the request started."""
    TASK_DONE = "task_done"
    """A child task of the request ended."""
    BLOCKED = "blocked"
    """One step held the event loop longer than the blocking threshold."""
    COMPLETED = "completed"
    """The app returned normally."""
    FAILED = "failed"
    """The app raised."""
    CANCELLED = "cancelled"
    """The request's task was cancelled."""
    DISCONNECTED = "disconnected"
    """The client went away (an ``http.disconnect`` or ``websocket.disconnect`` arrived)."""

    def __str__(self) -> str:
        return self.value


TERMINAL_KINDS = frozenset({EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED})
"""Kinds that end a trace; exactly one of them closes every finished trace."""


class TaskRef(NamedTuple):
    """Which task an event happened in.

    ``id`` is asgitrace's own number, unique for the life of the process (``id(task)``
    is reused by CPython as soon as a task is freed, so it cannot tell tasks apart).
    """

    id: int
    name: str


class Event(NamedTuple):
    """One moment of a request.

    Attributes:
        seq: Order of the event within its trace (increasing, unique; not comparable
            across traces: use ``t_ns``).
        t_ns: ``time.perf_counter_ns()`` (or the tracer's injected clock) when it happened.
        kind: What happened.
        task: The task it happened in.
        fields: Kind-specific details, e.g. ``status`` for ``sent`` or ``target`` for
            ``awaiting`` (see the event table in the docs).
    """

    seq: int
    t_ns: int
    kind: EventKind
    task: TaskRef
    fields: Mapping[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        """Return the field *name*, or *default* when this event has no such field."""
        return self.fields.get(name, default)
