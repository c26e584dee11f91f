"""The rows of the execution table as they are laid out: `Row`, and the builders of the
rows that take more than one event or look back at the rows before them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ..trace import Event, TaskRef
from ..trace.codec import ends_response
from ._text import (
    NONE,
    blocked_by_text,
    fmt_bytes,
    fmt_duration,
    is_sleep,
    short_name,
    target_of,
    where_of,
)

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = [
    "ALL_SENT",
    "CHUNK_READY",
    "PART_SENT",
    "Row",
    "Step",
    "attach_return",
    "await_row",
    "family",
    "fill_after",
    "final_body",
    "place_blocked",
    "sent_row",
    "wait_row",
]

CHUNK_READY: Final = "Body chunk ready"
"""The state before a ``sent`` row of response body only (what the folds look for)."""
PART_SENT: Final = "Part of the response sent"
ALL_SENT: Final = "Response sent to client"


@dataclass(frozen=True, slots=True)
class Step:
    """One row of the execution table.

    Attributes:
        number: 1-based row number.
        action: What happened, as a plain sentence.
        before: State before the action.
        awaited: Whether the request was waiting on something during this step.
        after: State after the action.
        output: What the step produced (``None`` when nothing).
        offset_ns: When it started, from the request's arrival.
        duration_ns: How long it lasted, when it is a span.
        mark: ``""`` or one of ``blocked``, ``child``, ``thread``, ``after``, ``failed``,
            ``cancelled``, ``disconnected``, ``loop``.
        task: The task it happened in.
        approx: The time is derived, not observed (``entered`` before Python 3.12).
        body_bytes: The response body bytes a ``sent`` step carried (0 for others).
        covers: The steps a folded row stands for (empty for a row of its own); see
            `execution_steps`.
    """

    number: int
    action: str
    before: str
    awaited: bool
    after: str
    output: str
    offset_ns: int
    duration_ns: int | None = None
    mark: str = ""
    task: str = ""
    approx: bool = False
    kind: str = ""
    target: str = ""
    body_bytes: int = 0
    covers: tuple[Step, ...] = ()


@dataclass(slots=True)
class Row:
    kind: str
    action: str
    before: str
    awaited: bool
    after: str
    output: str
    t_ns: int
    task: TaskRef
    duration_ns: int | None = None
    mark: str = ""
    approx: bool = False
    target: str = ""
    function: str = ""
    events: list[Event] = field(default_factory=list)
    body_bytes: int = 0


def await_row(e: Event, prefix: str, late: bool) -> Row:
    """The row of a suspension: a worker thread, a cooperative yield, or an await."""
    target = target_of(e)
    function = short_name(e.get("function"))
    where = where_of(e)
    at = f" at {where}" if where else ""
    if e.get("thread") and not e.get("cooperative"):
        function = short_name(e.get("thread"))
        kind, mark, action = "thread", "thread", f"{prefix}Run {function} in a worker thread"
        before, after = "Sync function ready to run", "Event loop free while the thread runs"
    elif e.get("cooperative"):
        kind, mark, action = "yield", "", f"{prefix}Yield to the event loop ({target})"
        before, after = f"{function} running{at}", "Other ready tasks run first"
    else:
        kind, mark, action = "await", "", f"{prefix}Await {target}"
        before = (
            f"{function} paused{at}"
            if e.get("function")
            else f"Framework code paused ({e.get('via')})"
        )
        after = "Yield control to event loop"
    return Row(
        kind=kind,
        action=action,
        before=before,
        awaited=True,
        after=after,
        output=NONE,
        t_ns=e.t_ns,
        task=e.task,
        mark="after" if late else mark,
        target=target,
        function=function,
    )


def wait_row(awaiting: Event, resumed: Event, late: bool) -> Row:
    target = target_of(awaiting)
    steps = resumed.get("other_steps", 0) or 0
    requests = resumed.get("other_requests")
    tasks = resumed.get("other_tasks")
    if steps == 0:
        action = "Event loop idle"
    elif requests:
        action = (
            f"Event loop runs other tasks ({steps} step{'s' * (steps != 1)} of "
            f"{requests} other request{'s' * (requests != 1)})"
        )
    elif tasks:
        action = (
            f"Event loop runs other tasks ({steps} step{'s' * (steps != 1)} of "
            f"{tasks} task{'s' * (tasks != 1)})"
        )
    else:
        action = f"Event loop runs other tasks ({steps} step{'s' * (steps != 1)})"
    thread = awaiting.get("thread") and not awaiting.get("cooperative")
    if thread:
        action = (
            f"Worker thread runs {short_name(awaiting.get('thread'))}; "
            + action[0].lower()
            + action[1:]
        )
    blamed = blocked_by_text(resumed)
    if blamed:
        action += f": {blamed}"
    waited = resumed.get("waited_ns")
    ongoing = "Sleep ongoing" if is_sleep(target) else f"{target} pending"
    done = (
        f"Sleep completes after {fmt_duration(waited)}"
        if is_sleep(target)
        else f"{target} completes after {fmt_duration(waited)}"
    )
    return Row(
        "loop",
        action,
        ongoing,
        True,
        done,
        NONE,
        awaiting.t_ns,
        awaiting.task,
        duration_ns=waited,
        mark="after" if late else "loop",
        target=target,
    )


def family(e: Event) -> str:
    """Messages that read as one row: a response's start and body; WebSocket sends."""
    kind = str(e.get("type", ""))
    if kind.startswith(("http.response.", "websocket.http.response.")):
        return "response"
    return kind


def final_body(e: Event) -> bool:
    return ends_response(e.fields)


def sent_row(group: list[Event], prefix: str, late: bool) -> Row:
    first = group[0]
    status = next((g.get("status") for g in group if g.get("status") is not None), None)
    body = sum(g.get("body_bytes", 0) or 0 for g in group)
    chunks = sum(1 for g in group if g.get("type") == "http.response.body" and g.get("body_bytes"))
    kinds = {g.get("type") for g in group}
    content = next((g.get("content_type") for g in group if g.get("content_type")), None)
    done = any(final_body(g) for g in group)
    if "http.response.start" in kinds:
        size = f", {fmt_bytes(body)}" if body or done else ""
        if chunks > 1:
            size = f", {chunks} chunks, {fmt_bytes(body)}"
        action = f"ASGI server sends response ({status}{size})"
        kind_text = (
            "JSON"
            if content and "json" in content
            else (content.split(";")[0] if content else "a body")
        )
        output = f"HTTP {status} with {kind_text}"
        before = "Response ready"
    elif "websocket.accept" in kinds:
        action, before, output = "Accept the WebSocket", "Handshake received", "HTTP 101"
    elif "websocket.send" in kinds:
        total = sum(g.get("body_bytes", 0) or g.get("text_chars", 0) or 0 for g in group)
        action, before, output = (
            f"Send {len(group)} WebSocket message{'s' * (len(group) != 1)} ({total} B/chars)",
            "Message ready",
            NONE,
        )
    elif "websocket.close" in kinds:
        code = next((g.get("code") for g in group if g.get("code") is not None), 1000)
        action, before, output = f"Close the WebSocket (code {code})", "Socket open", NONE
    else:
        more = "" if done else ", more to come"
        action = f"Send response body ({fmt_bytes(body)}{more})"
        before, output = CHUNK_READY, NONE
    after = ALL_SENT if done else PART_SENT
    return Row(
        "sent",
        prefix + action,
        before,
        False,
        after,
        output,
        first.t_ns,
        first.task,
        mark="after" if late else "",
        body_bytes=body,
    )


def attach_return(rows: list[Row], e: Event, prefix: str, *, separate: bool) -> None:
    value = str(e.get("value"))
    what = "Return response dict" if value.startswith("{") else f"Return {value[:40]}"
    for row in () if separate else reversed(rows):
        if row.task != e.task:
            continue
        if row.kind in ("entered", "resumed"):
            row.after = what
            row.output = value
            return
        if row.kind not in ("read", "spawned", "task_done"):
            break
    rows.append(
        Row(
            "returned",
            f"{prefix}Return from {short_name(e.get('function'))}",
            "Function finishing",
            False,
            what,
            value,
            e.t_ns,
            e.task,
        )
    )


def place_blocked(rows: list[Row], e: Event, prefix: str, trace: Trace) -> None:
    duration = e.get("duration_ns", 0)
    started = e.get("started_ns", e.t_ns - duration)
    code = e.get("code") or e.get("function") or "?"
    where = where_of(e)
    row = Row(
        "blocked",
        f"{prefix}Block the event loop for {fmt_duration(duration)}: {code}"
        + (f" ({where})" if where else ""),
        "Function running",
        False,
        "Nothing else could run meanwhile",
        NONE,
        started,
        e.task,
        duration_ns=duration,
        mark="blocked",
        target=str(code),
    )
    # The block began before the rows recorded during it (the response it sent, the
    # value it returned): put it before the first of those, after the entry.
    position = len(rows)
    for i in range(len(rows) - 1, -1, -1):
        candidate = rows[i]
        if candidate.t_ns < started or candidate.task != e.task:
            break
        if candidate.kind in ("sent", "returned", "await", "yield", "thread"):
            position = i
    rows.insert(position, row)


_ENDS_A_RUN: Final = {
    "blocked": "Block the event loop",
    "task_done": "Finish the child task",
    "sent": "Return the response",
    "failed": "Raise an exception",
}
"""What a function row's state after says when the next row of its task is of this kind."""


def fill_after(rows: list[Row]) -> None:
    """Function rows (entry, resume) end where the function does next."""
    for i, row in enumerate(rows):
        if row.kind not in ("entered", "resumed") or row.after:
            continue
        for nxt in rows[i + 1 :]:
            if nxt.task != row.task and nxt.kind != "sent":
                continue
            if nxt.kind in ("await", "yield", "thread"):
                row.after = f"Hit await {nxt.target}"
                break
            if nxt.kind in _ENDS_A_RUN:
                row.after = _ENDS_A_RUN[nxt.kind]
                break
    for i, row in enumerate(rows):
        if row.kind == "received" and not row.after:
            following = next((r for r in rows[i + 1 :] if r.kind != "read"), None)
            if following is not None and following.kind == "entered":
                async_ = "async" in following.action
                row.after = "Start async endpoint" if async_ else "Start endpoint"
            else:
                row.after = "App starts handling it"
