"""The codec of raw events: what each raw layout means, its encoder beside its decoder.

Capture records an event's details as a tuple of atoms whose first item names its layout,
``("msg", type, body_bytes, ...)``: cheap to build on the hot path, and a stored trace made
of such tuples is not tracked by the garbage collector. `decode` turns one into the
fields a view reads, when a view first reads `Trace.events`. Each layout below has one
encoder (``*_fields``, called by capture) and one decoder (``_decode_*``, reached through
`DECODERS`), side by side, so that what a layout means is written once.

The decoders read nothing live: code objects through `code_of` (kept alive by the code
table), source lines through `source_line`, and the loop's other work while a task waited
from the trace's own *work* table, fixed when the trace closed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from .._support import log_failure
from ._codes import code_id, code_of
from ._events import TaskRef
from ._source import source_line, target_from_source

__all__ = [
    "DECODERS",
    "Decoder",
    "Work",
    "awaiting_fields",
    "blocked_fields",
    "decode",
    "decode_message",
    "end_fields",
    "ends_response",
    "entered_fields",
    "expand",
    "message_fields",
    "msg_fields",
    "open_fields",
    "pairs_of",
    "resumed_fields",
    "returned_fields",
    "spawned_fields",
    "task_done_fields",
    "work_key",
    "yielded_fields",
]

Work: TypeAlias = Mapping[tuple[int, int, int], tuple[tuple[str, Any], ...]]
"""The loop's other work while a task waited, per ``resumed`` event's (start step, end
step, request task id): the fields it adds, fixed when the trace closed."""

Decoder = Callable[[tuple[Any, ...], Work], Mapping[str, Any]]
"""Turns a layout's raw tuple (and the trace's work table) into the event's fields."""

_NO_WORK: Final[Work] = MappingProxyType({})


def pairs_of(mapping: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...] | None:
    """A dict of atoms as a tuple of pairs: a tuple holding a dict is never untracked by
    the garbage collector, one holding only tuples and atoms is."""
    return None if mapping is None else tuple(mapping.items())


def _late(fields: dict[str, Any], late: bool) -> dict[str, Any]:
    if late:
        fields["after_response"] = True
    return fields


# -- open: the scope arrived --------------------------------------------------------------


def open_fields(
    kind: str, path: str, method: str | None, http_version: str | None
) -> tuple[Any, ...]:
    """``("open", type, path, method, http_version)``: the ``received`` event of a scope."""
    return ("open", kind, path, method, http_version)


def _decode_open(raw: tuple[Any, ...], work: Work) -> Mapping[str, Any]:
    _, kind, path, method, http_version = raw
    fields = {"type": kind, "path": path}
    if method is not None:
        fields["method"] = method
    if http_version is not None:
        fields["http_version"] = http_version
    return fields


# -- msg: an ASGI message, its sizes and flags, never its body -----------------------------


def msg_fields(
    kind: str,
    body_bytes: int | None,
    more_body: bool | None,
    text_chars: int | None,
    status: int | None,
    content_type: str | None,
    code: int | None,
) -> tuple[Any, ...]:
    """``("msg", type, body_bytes, more_body, text_chars, status, content_type, code)``;
    `None` for what the message does not have."""
    return ("msg", kind, body_bytes, more_body, text_chars, status, content_type, code)


def message_fields(
    message: Mapping[str, Any], status: int | None = None, code: int | None = None
) -> tuple[Any, ...]:
    """The ``msg`` fields of any ASGI message (*status* and *code* as the caller knows them)."""
    kind = message["type"]
    if "body" in message:
        return msg_fields(kind, len(message["body"]), bool(message.get("more_body", False)),
                          None, status, None, code)  # fmt: skip
    data = message.get("bytes")
    if data is not None:
        return msg_fields(kind, len(data), None, None, status, None, code)
    text = message.get("text")
    if text is not None:
        return msg_fields(kind, None, None, len(text), status, None, code)
    return msg_fields(kind, None, None, None, status, None, code)


_MESSAGE_KEYS: Final = ("type", "body_bytes", "more_body", "text_chars", "status",
                        "content_type", "code")  # fmt: skip


def decode_message(raw: tuple[Any, ...], work: Work = _NO_WORK) -> Mapping[str, Any]:
    """The fields of a ``msg`` tuple (what `ends_response` reads)."""
    pairs = zip(_MESSAGE_KEYS, raw[1:], strict=True)
    return {key: value for key, value in pairs if value is not None}


def ends_response(fields: Mapping[str, Any]) -> bool:
    """Whether a ``sent`` message's fields complete the response (the last body, a close)."""
    kind = fields.get("type")
    if kind in ("http.response.body", "websocket.http.response.body"):
        return not fields.get("more_body", False)
    return bool(kind == "websocket.close")


# -- end: the terminal event ---------------------------------------------------------------


def end_fields(status: int | None, exception: str | None = None) -> tuple[Any, ...]:
    """``("end", status, exception)``: the fields of a terminal event."""
    return ("end", status, exception)


def _decode_end(raw: tuple[Any, ...], work: Work) -> Mapping[str, Any]:
    _, status, exception = raw
    if exception is None:
        return {"status": status}
    return {"exception": exception, "status": status}


# -- entered / returned: the endpoint started, returned -----------------------------------


def entered_fields(code: Any, *, derived: bool, thread: str | None = None) -> tuple[Any, ...]:
    """``("entered", code id, derived, thread)``: the endpoint *code* started."""
    return ("entered", code_id(code), derived, thread)


def _decode_entered(raw: tuple[Any, ...], work: Work) -> Mapping[str, Any]:
    _, code_index, derived, thread = raw
    code = code_of(code_index)
    fields: dict[str, Any] = {"derived": derived}
    if code is not None:
        fields = {
            "function": getattr(code, "co_qualname", code.co_name),
            "file": code.co_filename,
            "line": code.co_firstlineno,
            "derived": derived,
        }
    if thread is not None:
        fields["thread"] = thread
    return fields


def returned_fields(
    function: str, value: str, watched: Mapping[str, str] | None, thread: str | None
) -> tuple[Any, ...]:
    """``("returned", function, value repr, watched pairs, thread)``."""
    return ("returned", function, value, pairs_of(watched), thread)


def _decode_returned(raw: tuple[Any, ...], work: Work) -> Mapping[str, Any]:
    _, function, value, watched, thread = raw
    fields: dict[str, Any] = {"function": function, "value": value}
    if watched is not None:
        fields["watched"] = dict(watched)
    if thread is not None:
        fields["thread"] = thread
    return fields


# -- awaiting: where a suspended chain stopped ---------------------------------------------


def awaiting_fields(
    app_code: Any,
    app_line: int | None,
    leaf_code: Any,
    leaf_type: str | None,
    thread: str | None,
    cooperative: bool,
    watched: Mapping[str, str] | None,
) -> tuple[Any, ...]:
    """``("awaiting", app code id, line, leaf code id, leaf type, thread, cooperative,
    watched pairs)``."""
    return (
        "awaiting", code_id(app_code), app_line, code_id(leaf_code), leaf_type, thread,
        cooperative, pairs_of(watched),
    )  # fmt: skip


def _decode_awaiting(raw: tuple[Any, ...], work: Work) -> Mapping[str, Any]:
    _, code_index, line, leaf_index, leaf_type, thread, cooperative, watched = raw
    code = code_of(code_index)
    leaf = code_of(leaf_index)
    fields: dict[str, Any] = {}
    text = ""
    if code is not None:
        text = source_line(code.co_filename, line)
        fields["function"] = getattr(code, "co_qualname", code.co_name)
        fields["file"] = code.co_filename
        fields["line"] = line
        fields["code"] = text
    if leaf is not None:
        fields["via"] = f"{leaf.co_name} ({os.path.basename(leaf.co_filename)})"
    if thread is not None:
        fields["thread"] = thread
        fields["target"] = f"{thread}() in a worker thread"
    else:
        target = target_from_source(text)
        if target is None:
            target = f"{leaf.co_name}()" if leaf is not None else (leaf_type or "?")
        fields["target"] = target
    fields["cooperative"] = cooperative
    if watched:
        fields["watched"] = dict(watched)
    if cooperative:
        fields["target"] = f"{fields['target']} (cooperative yield)"
    return fields


# -- blocked: one step held the loop -------------------------------------------------------


def blocked_fields(
    duration: int, started: int, stack: tuple[tuple[str, int, str], ...], culprit: int, late: bool
) -> tuple[Any, ...]:
    """``("blocked", duration ns, started ns, stack, culprit index, late)``."""
    return ("blocked", duration, started, stack, culprit, late)


def _decode_blocked(raw: tuple[Any, ...], work: Work) -> Mapping[str, Any]:
    _, duration, started, stack, culprit, late = raw
    fields: dict[str, Any] = {"duration_ns": duration, "started_ns": started, "stack": stack}
    if stack:
        file, line, function = stack[culprit]
        fields.update(file=file, line=line, function=function)
    if late:
        fields["after_response"] = True
    if stack:  # after `after_response`: the order the fields always had
        fields["code"] = source_line(file, line)
    fields["stack"] = tuple(f"{f}:{n} in {fn}" for f, n, fn in stack)
    return fields


# -- the stepper's: resumed, yielded, spawned, task_done -----------------------------------


def resumed_fields(
    waited: int, lag: int | None, late: bool, start: int, end: int, owner: int
) -> tuple[Any, ...]:
    """``("resumed", waited ns, lag ns, late, start step, end step, request task id)``:
    the steps the loop ran meanwhile are ``start + 1 .. end`` (see `Work`); *end* is -1
    when no loop monitor counted steps."""
    return ("resumed", waited, lag, late, start, end, owner)


def work_key(raw: tuple[Any, ...]) -> tuple[int, int, int]:
    """The `Work` key of a ``resumed`` tuple: (start step, end step, request task id)."""
    return (raw[4], raw[5], raw[6])


def _decode_resumed(raw: tuple[Any, ...], work: Work) -> Mapping[str, Any]:
    _, waited, lag, late, start, end, _owner = raw
    fields: dict[str, Any] = {"waited_ns": waited, "lag_ns": lag}
    if late:
        fields["after_response"] = True
    other = work.get(work_key(raw))
    if other is None and end >= 0:
        fields["other_steps"] = max(end - start, 0)  # no entry: none ran meanwhile
    elif other is not None:
        fields.update(other)
        blocked_by = fields.get("blocked_by")
        if blocked_by:
            fields["blocked_by"] = tuple(_blocker(b) for b in blocked_by)
    return fields


_BLOCKER_KEYS: Final = ("duration_ns", "method", "path", "trace_id", "file", "line", "function")


def _blocker(raw: Any) -> Mapping[str, Any]:
    """Another request's blocked step during this wait (a dict from JSON stays one)."""
    if isinstance(raw, Mapping):
        return raw
    return dict(zip(_BLOCKER_KEYS, raw, strict=False))


def yielded_fields(ready: int | None, late: bool) -> tuple[Any, ...]:
    """``("yielded", ready-queue length, late)``."""
    return ("yielded", ready, late)


def _decode_yielded(raw: tuple[Any, ...], work: Work) -> Mapping[str, Any]:
    _, ready, late = raw
    return _late({"ready": ready}, late)


# -- suspended: one record for a suspension's two events -----------------------------------
#
# Capture records each suspension of a traced task as ONE event-level record,
# ``(seq, t, "suspended", task id, task name, awaiting fields, ready, late)``, instead of
# an ``awaiting`` and a ``yielded`` event (two tuples and two sequence numbers on the
# hottest path). `expand` turns it back into those two events when a trace is read.

SUSPENDED: Final = "suspended"
"""The kind of the compact suspension record (never a kind of a read trace's events)."""


def expand(raw_events: tuple[Any, ...]) -> tuple[Any, ...]:
    """Raw events with each ``suspended`` record as its ``awaiting`` and ``yielded``
    events, numbered again in order (1, 2, ...: sequence numbers order the events of one
    trace). Events without such a record are returned as they are."""
    for event in raw_events:
        if event[2] == SUSPENDED:
            break
    else:
        return raw_events
    out: list[tuple[Any, ...]] = []
    seq = 0
    for event in raw_events:
        if event[2] == SUSPENDED:
            _, t, _, task_id, task_name, site, ready, late = event
            out.append((seq + 1, t, "awaiting", task_id, task_name, site))
            out.append((seq + 2, t, "yielded", task_id, task_name, yielded_fields(ready, late)))
            seq += 2
        else:
            seq += 1
            out.append((seq, *event[1:]))
    return tuple(out)


def spawned_fields(parent_id: int, parent_name: str, coro: str, late: bool) -> tuple[Any, ...]:
    """``("spawned", parent task id, parent task name, coroutine name, late)``."""
    return ("spawned", parent_id, parent_name, coro, late)


def _decode_spawned(raw: tuple[Any, ...], work: Work) -> Mapping[str, Any]:
    _, parent_id, parent_name, coro, late = raw
    return _late({"parent": TaskRef(parent_id, parent_name), "coro": coro}, late)


def task_done_fields(outcome: str, exception: str | None, late: bool) -> tuple[Any, ...]:
    """``("task_done", outcome, exception type name, late)``."""
    return ("task_done", outcome, exception, late)


def _decode_task_done(raw: tuple[Any, ...], work: Work) -> Mapping[str, Any]:
    _, outcome, exception, late = raw
    fields: dict[str, Any] = {"outcome": outcome}
    if exception is not None:
        fields["exception"] = exception
    return _late(fields, late)


DECODERS: Final[dict[str, Decoder]] = {
    "open": _decode_open,
    "msg": decode_message,
    "end": _decode_end,
    "entered": _decode_entered,
    "returned": _decode_returned,
    "awaiting": _decode_awaiting,
    "blocked": _decode_blocked,
    "resumed": _decode_resumed,
    "yielded": _decode_yielded,
    "spawned": _decode_spawned,
    "task_done": _decode_task_done,
}
"""The decoder of each layout, by the first item of its raw tuple."""


def decode(fields: Any, work: Work = _NO_WORK) -> Mapping[str, Any]:
    """An event's fields as a view reads them: a raw tuple decoded, a dict as it is.

    A decoder that fails is logged and gives ``{"unresolved": layout}`` (fail-open).
    """
    if type(fields) is tuple:
        try:
            return MappingProxyType(dict(DECODERS[fields[0]](fields, work)))
        except Exception as exc:
            log_failure("resolving event details", exc)
            return MappingProxyType({"unresolved": str(fields[0])})
    return MappingProxyType(dict(fields))
