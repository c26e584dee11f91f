"""The execution table: `execution_steps` turns a trace's events into the tutorial's rows.

Table-driven: `_BUILDERS` maps each event kind to the function that lays out its row
(kinds without a row, ``yielded`` and ``completed``, have none); `_Layout` carries what
the builders share while the events are read in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from ..trace import Event, EventKind
from ._fold import fold_steps
from ._rows import (
    Row,
    Step,
    attach_return,
    await_row,
    family,
    fill_after,
    final_body,
    place_blocked,
    sent_row,
    wait_row,
)
from ._text import (
    NONE,
    UNKNOWN,
    fmt_bytes,
    fmt_duration,
    is_sleep,
    short_name,
    short_task,
    target_of,
)

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["Detail", "Step", "execution_steps"]


def _is_shown_await(event: Event, waited: int | None, detail: bool) -> bool:
    if detail or event.get("function"):
        return True
    if event.get("cooperative"):  # a framework checkpoint (anyio, Starlette)
        return False
    return bool(event.get("thread")) or (waited or 0) >= 1_000_000


class _Layout:
    """What the row builders share while `execution_steps` reads the events in order."""

    __slots__ = (
        "blocked_spans",
        "detail",
        "endpoint",
        "events",
        "index",
        "request",
        "response_done",
        "resumed_of",
        "rows",
        "trace",
        "waits",
    )

    def __init__(self, trace: Trace, detail: bool) -> None:
        self.trace = trace
        self.detail = detail
        self.events = events = trace.events
        self.request = trace.task
        self.rows: list[Row] = []
        self.waits: dict[int, tuple[Event, Row | None]] = {}  # task id → (awaiting, its row)
        # Pair each awaiting with its resumed, to know how long it lasted before laying out.
        self.resumed_of: dict[int, Event] = {}
        pending: dict[int, Event] = {}
        for e in events:
            if e.kind is EventKind.AWAITING:
                pending[e.task.id] = e
            elif e.kind is EventKind.RESUMED and e.task.id in pending:
                self.resumed_of[pending.pop(e.task.id).seq] = e
        self.blocked_spans = [
            (b.task, int(b.get("started_ns", b.t_ns - b.get("duration_ns", 0))), b.t_ns)
            for b in events
            if b.kind is EventKind.BLOCKED
        ]
        self.endpoint = ""
        self.response_done = False
        self.index = 0  # of the next event to read (`_sent` reads ahead)


_Builder: TypeAlias = Callable[[_Layout, Event, str, bool], None]
"""Lays out the row(s) of one event: (layout, event, task prefix, after the response)."""


def _add(
    s: _Layout, e: Event, *, kind: str, action: str, before: str, after: str, **extra: Any
) -> None:
    """Append the row of *e* that awaits nothing (its output `NONE` unless given)."""
    extra.setdefault("output", NONE)
    s.rows.append(
        Row(
            kind=kind,
            action=action,
            before=before,
            awaited=False,
            after=after,
            t_ns=e.t_ns,
            task=e.task,
            **extra,
        )
    )


def _received(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    if "path" in e.fields:
        method = e.get("method") or str(e.get("type", "")).upper()
        _add(
            s,
            e,
            kind="received",
            action=f"Request received by ASGI server ({method} {e.get('path')})",
            before="No active task for this request",
            after="",
        )
    elif e.get("body_bytes") or e.get("text_chars") or e.get("more_body") or s.detail:
        size = (
            fmt_bytes(e.get("body_bytes", 0))
            if "text_chars" not in e.fields
            else f"{e.get('text_chars')} chars"
        )
        _add(
            s,
            e,
            kind="read",
            action=f"{prefix}Receive {e.get('type')} ({size})",
            before="Waiting for the client's data",
            after="Data handed to the app",
        )


def _entered(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    s.endpoint = endpoint = short_name(e.get("function"))
    in_thread = e.get("thread")
    if in_thread:  # a sync endpoint: the framework hands it to the thread pool
        action = f"Call {endpoint} in the thread pool"
    else:
        action = f"Enter async function {endpoint}"
    _add(
        s,
        e,
        kind="entered",
        action=prefix + action,
        before="Function start",
        after="",
        approx=bool(e.get("derived")),
        function=endpoint,
    )


def _awaiting(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    resumed = s.resumed_of.get(e.seq)
    waited = resumed.get("waited_ns") if resumed is not None else None
    if not _is_shown_await(e, waited, s.detail):
        s.waits[e.task.id] = (e, None)
        return
    row = await_row(e, prefix, late)
    s.rows.append(row)
    s.waits[e.task.id] = (e, row)
    if e.task == s.request and resumed is not None:
        s.rows.append(wait_row(e, resumed, late))


def _resumed(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    awaited, shown = s.waits.pop(e.task.id, (None, None))
    if shown is None or awaited is None:
        return
    name = awaited.get("function") or awaited.get("thread")
    target = target_of(awaited)
    function = short_name(name) if name else _own_coroutine(s, e)
    lag = e.get("lag_ns")
    detail_text = f"waited {fmt_duration(e.get('waited_ns'))}"
    if lag is not None:
        detail_text += f", lag {fmt_duration(lag)}"
    resume = f"Resume {function} after await" if function else f"Resume after {target}"
    _add(
        s,
        e,
        kind="resumed",
        action=f"{prefix}{resume} ({detail_text})",
        before="Sleep done" if is_sleep(target) else f"{target} done",
        after="",
        output=NONE if e.task != s.request or s.trace.of_kind("returned") else UNKNOWN,
        mark="after" if late else "",
        function=function,
    )


def _own_coroutine(s: _Layout, e: Event) -> str:
    """A wait with no app frame on its chain: a child task is named by its own coroutine
    (a ``gather`` child, a pool's release task); the request task is then in framework
    code (a response's task group, a middleware's stream) and gets no name ("")."""
    for spawned in s.trace.of_kind("spawned"):
        if spawned.task.id == e.task.id and spawned.get("coro"):
            return short_name(str(spawned.get("coro")))
    return ""


def _returned(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    inside_block = any(
        task == e.task and start <= e.t_ns <= end for task, start, end in s.blocked_spans
    )
    attach_return(s.rows, e, prefix, separate=inside_block)


def _sent(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    # The messages that read as one row (a response's start and body) are read ahead.
    events = s.events
    group = [e]
    kind = family(e)
    while (
        s.index < len(events)
        and events[s.index].kind is EventKind.SENT
        and events[s.index].task == e.task
        and family(events[s.index]) == kind
    ):
        group.append(events[s.index])
        s.index += 1
    s.rows.append(sent_row(group, prefix, late))
    if any(final_body(g) for g in group):
        s.response_done = True


def _blocked(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    place_blocked(s.rows, e, prefix, s.trace)


def _spawned(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    parent = e.get("parent")
    _add(
        s,
        e,
        kind="spawned",
        action=f"{prefix}Start child task {short_name(e.get('coro'))}()"
        f" (from {parent.name if parent else '?'})",
        before="Parent task running",
        after="Child task scheduled on the loop",
        mark="after" if late else "child",
    )


def _task_done(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    outcome = e.get("outcome", "completed")
    exception = e.get("exception")
    _add(
        s,
        e,
        kind="task_done",
        action=f"{prefix}Child task {outcome}" + (f" ({exception})" if exception else ""),
        before="Child task running",
        after="Child task finished",
        mark="after" if late else "child",
    )


def _disconnected(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    _add(
        s,
        e,
        kind="disconnected",
        action=f"Client disconnected ({e.get('type')})",
        before="Connection open",
        after="Connection closed by the client",
        mark="disconnected",
    )


def _failed(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    status = e.get("status")
    _add(
        s,
        e,
        kind="failed",
        action=f"Endpoint raised {e.get('exception')}",
        before="Function running",
        after="Exception propagates to the server",
        output=f"HTTP {status}" if status else "Server answers 500 / closes",
        mark="failed",
    )


def _cancelled(s: _Layout, e: Event, prefix: str, late: bool) -> None:
    _add(
        s,
        e,
        kind="cancelled",
        action="Request task cancelled",
        before="Task pending",
        after="CancelledError raised in the task",
        mark="cancelled",
    )


_BUILDERS: Final[dict[EventKind, _Builder]] = {
    EventKind.RECEIVED: _received,
    EventKind.ENTERED: _entered,
    EventKind.AWAITING: _awaiting,
    EventKind.RESUMED: _resumed,
    EventKind.RETURNED: _returned,
    EventKind.SENT: _sent,
    EventKind.BLOCKED: _blocked,
    EventKind.SPAWNED: _spawned,
    EventKind.TASK_DONE: _task_done,
    EventKind.DISCONNECTED: _disconnected,
    EventKind.FAILED: _failed,
    EventKind.CANCELLED: _cancelled,
}
"""The row builder of each event kind."""


Detail: TypeAlias = "bool | Literal['all']"
"""``False`` (the default): a table a person reads; ``"all"`` (or ``True``): every row."""


def execution_steps(trace: Trace, *, detail: Detail = False) -> list[Step]:
    """The execution table of *trace*: one `Step` per thing that happened.

    By default, suspensions inside the framework that last under a millisecond
    (Starlette's and anyio's own checkpoints) are left out, and a long request is
    folded to about 15 rows: other tasks' consecutive steps become one row, repeated
    waits on the same await one row with a count, and then each wait one row (a
    folded step lists the steps it stands for in ``covers``). ``detail="all"`` shows
    every row.
    """
    everything = detail is True or detail == "all"
    steps = _steps(trace, everything)
    return steps if everything else fold_steps(steps, trace.task.name)


def _steps(trace: Trace, detail: bool) -> list[Step]:
    s = _Layout(trace, detail)
    events = s.events
    while s.index < len(events):
        e = events[s.index]
        s.index += 1
        build = _BUILDERS.get(e.kind)
        if build is not None:
            late = s.response_done or bool(e.get("after_response"))
            prefix = "" if e.task == s.request else f"[{short_task(e.task.name)}] "
            build(s, e, prefix, late)
    rows = s.rows
    fill_after(rows)
    # A blocking step began with the framework code before the endpoint; the block the
    # reader cares about starts no earlier than the row before it.
    for i, row in enumerate(rows):
        if row.kind == "blocked" and i:
            row.t_ns = max(row.t_ns, rows[i - 1].t_ns)
    return [
        Step(
            number=n,
            action=r.action,
            before=r.before,
            awaited=r.awaited,
            after=r.after or UNKNOWN,
            output=r.output,
            offset_ns=max(r.t_ns - trace.start_ns, 0),
            duration_ns=r.duration_ns,
            mark=r.mark,
            task=r.task.name,
            approx=r.approx,
            kind=r.kind,
            target=r.target,
            body_bytes=r.body_bytes,
        )
        for n, r in enumerate(rows, 1)
    ]
