"""What the views show, computed from a trace: rich-free, so every renderer shares it.

`execution_steps` turns events into the tutorial's execution table, `variable_tracker`
into its variable tracker, `timeline_lanes` into swimlanes for several requests and
`key_moments` into the short list a developer should notice. The rich renderers
(`_render`), the markdown explain page and the exporters only lay these out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ..trace import Event, EventKind, TaskRef
from ..trace.codec import ends_response

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = [
    "Lane",
    "Step",
    "Tracker",
    "execution_steps",
    "fmt_bytes",
    "fmt_duration",
    "key_moments",
    "short_name",
    "timeline_lanes",
    "variable_tracker",
]

NONE: Final = "None"
UNKNOWN: Final = "—"


def fmt_duration(ns: float | None) -> str:
    """``1.001 s``, ``12.3 ms``, ``45 µs``."""
    if ns is None:
        return UNKNOWN
    if ns >= 1e9:
        return f"{ns / 1e9:.3f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.0f} µs"


def fmt_bytes(n: int) -> str:
    """``27 B``, ``4.1 KiB``, ``2.0 MiB``."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def short_name(qualname: str | None) -> str:
    """``reference_app.<locals>.wait_endpoint`` → ``wait_endpoint``."""
    if not qualname:
        return "endpoint"
    return qualname.rsplit(".", 1)[-1]


def _where(event: Event) -> str:
    file = event.get("file")
    return f"{os.path.basename(file)}:{event.get('line')}" if file else ""


def _target(event: Event) -> str:
    target = str(event.get("target") or "?")
    return target.removesuffix(" (cooperative yield)")


def _is_sleep(target: str) -> bool:
    return target.startswith(("asyncio.sleep(", "sleep(", "anyio.sleep("))


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


@dataclass(slots=True)
class _Row:
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


def _is_shown_await(event: Event, waited: int | None, detail: bool) -> bool:
    if detail or event.get("function"):
        return True
    if event.get("cooperative"):  # a framework checkpoint (anyio, Starlette)
        return False
    return bool(event.get("thread")) or (waited or 0) >= 1_000_000


def execution_steps(trace: Trace, *, detail: bool = False) -> list[Step]:
    """The execution table of *trace*: one `Step` per thing that happened.

    Suspensions inside the framework that last under a millisecond (Starlette's and
    anyio's own checkpoints) are left out unless *detail* is true.
    """
    events = trace.events
    request = trace.task
    rows: list[_Row] = []
    waits: dict[int, tuple[Event, _Row | None]] = {}  # task id → (awaiting, its row)
    resumed_of: dict[int, Event] = {}
    # Pair each awaiting with its resumed, to know how long it lasted before laying out.
    pending: dict[int, Event] = {}
    for e in events:
        if e.kind is EventKind.AWAITING:
            pending[e.task.id] = e
        elif e.kind is EventKind.RESUMED and e.task.id in pending:
            resumed_of[pending.pop(e.task.id).seq] = e
    blocked_spans = [
        (b.task, int(b.get("started_ns", b.t_ns - b.get("duration_ns", 0))), b.t_ns)
        for b in events
        if b.kind is EventKind.BLOCKED
    ]
    endpoint = ""
    response_done = False
    index = 0
    while index < len(events):
        e = events[index]
        index += 1
        kind = e.kind
        late = response_done or bool(e.get("after_response"))
        prefix = "" if e.task == request else f"[{e.task.name}] "
        if kind is EventKind.RECEIVED:
            if "path" in e.fields:
                method = e.get("method") or str(e.get("type", "")).upper()
                rows.append(
                    _Row(
                        "received",
                        f"Request received by ASGI server ({method} {e.get('path')})",
                        "No active task for this request",
                        False,
                        "",
                        NONE,
                        e.t_ns,
                        e.task,
                    )
                )
            elif e.get("body_bytes") or e.get("text_chars") or e.get("more_body") or detail:
                size = (
                    fmt_bytes(e.get("body_bytes", 0))
                    if "text_chars" not in e.fields
                    else f"{e.get('text_chars')} chars"
                )
                rows.append(
                    _Row(
                        "read",
                        f"{prefix}Receive {e.get('type')} ({size})",
                        "Waiting for the client's data",
                        False,
                        "Data handed to the app",
                        NONE,
                        e.t_ns,
                        e.task,
                    )
                )
        elif kind is EventKind.ENTERED:
            endpoint = short_name(e.get("function"))
            in_thread = e.get("thread")
            action = (
                f"Enter function {endpoint} in worker thread {in_thread}"
                if in_thread
                else f"Enter async function {endpoint}"
            )
            rows.append(
                _Row(
                    "entered",
                    prefix + action,
                    "Function start",
                    False,
                    "",
                    NONE,
                    e.t_ns,
                    e.task,
                    approx=bool(e.get("derived")),
                    function=endpoint,
                )
            )
        elif kind is EventKind.AWAITING:
            resumed = resumed_of.get(e.seq)
            waited = resumed.get("waited_ns") if resumed is not None else None
            if not _is_shown_await(e, waited, detail):
                waits[e.task.id] = (e, None)
                continue
            row = _await_row(e, prefix, late)
            rows.append(row)
            waits[e.task.id] = (e, row)
            if e.task == request and resumed is not None:
                rows.append(_wait_row(e, resumed, late))
        elif kind is EventKind.RESUMED:
            awaited, shown = waits.pop(e.task.id, (None, None))
            if shown is None or awaited is None:
                continue
            name = awaited.get("function") or awaited.get("thread")
            function = short_name(name) if name else (endpoint or "endpoint")
            lag = e.get("lag_ns")
            detail_text = f"waited {fmt_duration(e.get('waited_ns'))}"
            if lag is not None:
                detail_text += f", lag {fmt_duration(lag)}"
            target = _target(awaited)
            rows.append(
                _Row(
                    "resumed",
                    f"{prefix}Resume {function} after await ({detail_text})",
                    "Sleep done" if _is_sleep(target) else f"{target} done",
                    False,
                    "",
                    NONE if e.task != request or trace.of_kind("returned") else UNKNOWN,
                    e.t_ns,
                    e.task,
                    mark="after" if late else "",
                    function=function,
                )
            )
        elif kind is EventKind.RETURNED:
            inside_block = any(
                task == e.task and start <= e.t_ns <= end for task, start, end in blocked_spans
            )
            _attach_return(rows, e, prefix, separate=inside_block)
        elif kind is EventKind.SENT:
            group = [e]
            family = _family(e)
            while (
                index < len(events)
                and events[index].kind is EventKind.SENT
                and events[index].task == e.task
                and _family(events[index]) == family
            ):
                group.append(events[index])
                index += 1
            rows.append(_sent_row(group, prefix, late))
            if any(_final_body(g) for g in group):
                response_done = True
        elif kind is EventKind.BLOCKED:
            _place_blocked(rows, e, prefix, trace)
        elif kind is EventKind.SPAWNED:
            rows.append(
                _Row(
                    "spawned",
                    f"{prefix}Start child task {short_name(e.get('coro'))}()"
                    f" (from {e.get('parent').name if e.get('parent') else '?'})",
                    "Parent task running",
                    False,
                    "Child task scheduled on the loop",
                    NONE,
                    e.t_ns,
                    e.task,
                    mark="after" if late else "child",
                )
            )
        elif kind is EventKind.TASK_DONE:
            outcome = e.get("outcome", "completed")
            rows.append(
                _Row(
                    "task_done",
                    f"{prefix}Child task {outcome}"
                    + (f" ({e.get('exception')})" if e.get("exception") else ""),
                    "Child task running",
                    False,
                    "Child task finished",
                    NONE,
                    e.t_ns,
                    e.task,
                    mark="after" if late else "child",
                )
            )
        elif kind is EventKind.DISCONNECTED:
            rows.append(
                _Row(
                    "disconnected",
                    f"Client disconnected ({e.get('type')})",
                    "Connection open",
                    False,
                    "Connection closed by the client",
                    NONE,
                    e.t_ns,
                    e.task,
                    mark="disconnected",
                )
            )
        elif kind is EventKind.FAILED:
            status = e.get("status")
            rows.append(
                _Row(
                    "failed",
                    f"Endpoint raised {e.get('exception')}",
                    "Function running",
                    False,
                    "Exception propagates to the server",
                    f"HTTP {status}" if status else "Server answers 500 / closes",
                    e.t_ns,
                    e.task,
                    mark="failed",
                )
            )
        elif kind is EventKind.CANCELLED:
            rows.append(
                _Row(
                    "cancelled",
                    "Request task cancelled",
                    "Task pending",
                    False,
                    "CancelledError raised in the task",
                    NONE,
                    e.t_ns,
                    e.task,
                    mark="cancelled",
                )
            )
    _fill_after(rows)
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
        )
        for n, r in enumerate(rows, 1)
    ]


def _await_row(e: Event, prefix: str, late: bool) -> _Row:
    target = _target(e)
    function = short_name(e.get("function"))
    where = _where(e)
    at = f" at {where}" if where else ""
    if e.get("thread") and not e.get("cooperative"):
        name = short_name(e.get("thread"))
        return _Row(
            "thread",
            f"{prefix}Run {name} in a worker thread",
            "Sync function ready to run",
            True,
            "Event loop free while the thread runs",
            NONE,
            e.t_ns,
            e.task,
            mark="after" if late else "thread",
            target=target,
            function=name,
        )
    if e.get("cooperative"):
        return _Row(
            "yield",
            f"{prefix}Yield to the event loop ({target})",
            f"{function} running{at}",
            True,
            "Other ready tasks run first",
            NONE,
            e.t_ns,
            e.task,
            mark="after" if late else "",
            target=target,
            function=function,
        )
    before = (
        f"{function} paused{at}" if e.get("function") else f"Framework code paused ({e.get('via')})"
    )
    return _Row(
        "await",
        f"{prefix}Await {target}",
        before,
        True,
        "Yield control to event loop",
        NONE,
        e.t_ns,
        e.task,
        mark="after" if late else "",
        target=target,
        function=function,
    )


def _wait_row(awaiting: Event, resumed: Event, late: bool) -> _Row:
    target = _target(awaiting)
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
    waited = resumed.get("waited_ns")
    ongoing = "Sleep ongoing" if _is_sleep(target) else f"{target} pending"
    done = (
        f"Sleep completes after {fmt_duration(waited)}"
        if _is_sleep(target)
        else f"{target} completes after {fmt_duration(waited)}"
    )
    return _Row(
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


def _family(e: Event) -> str:
    """Messages that read as one row: a response's start and body; WebSocket sends."""
    kind = str(e.get("type", ""))
    if kind.startswith(("http.response.", "websocket.http.response.")):
        return "response"
    return kind


def _final_body(e: Event) -> bool:
    return ends_response(e.fields)


def _sent_row(group: list[Event], prefix: str, late: bool) -> _Row:
    first = group[0]
    status = next((g.get("status") for g in group if g.get("status") is not None), None)
    body = sum(g.get("body_bytes", 0) or 0 for g in group)
    chunks = sum(1 for g in group if g.get("type") == "http.response.body" and g.get("body_bytes"))
    kinds = {g.get("type") for g in group}
    content = next((g.get("content_type") for g in group if g.get("content_type")), None)
    done = any(_final_body(g) for g in group)
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
        before, output = "Body chunk ready", NONE
    after = "Response sent to client" if done else "Part of the response sent"
    return _Row(
        "sent",
        prefix + action,
        before,
        False,
        after,
        output,
        first.t_ns,
        first.task,
        mark="after" if late else "",
    )


def _attach_return(rows: list[_Row], e: Event, prefix: str, *, separate: bool) -> None:
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
        _Row(
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


def _place_blocked(rows: list[_Row], e: Event, prefix: str, trace: Trace) -> None:
    duration = e.get("duration_ns", 0)
    started = e.get("started_ns", e.t_ns - duration)
    code = e.get("code") or e.get("function") or "?"
    where = _where(e)
    row = _Row(
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


def _fill_after(rows: list[_Row]) -> None:
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
            if nxt.kind == "blocked":
                row.after = "Block the event loop"
                break
            if nxt.kind == "task_done":
                row.after = "Finish the child task"
                break
            if nxt.kind == "sent":
                row.after = "Return the response"
                break
            if nxt.kind == "failed":
                row.after = "Raise an exception"
                break
    for i, row in enumerate(rows):
        if row.kind == "received" and not row.after:
            following = next((r for r in rows[i + 1 :] if r.kind != "read"), None)
            if following is not None and following.kind == "entered":
                async_ = "async" in following.action
                row.after = "Start async endpoint" if async_ else "Start endpoint"
            else:
                row.after = "App starts handling it"


# -- variable tracker -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tracker:
    """The variable tracker: a state per row for each column where something changed."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]


def variable_tracker(trace: Trace, steps: Sequence[Step] | None = None) -> Tracker:
    """The variable tracker of *trace*: function state, each await, the response and
    any watched variables, after each step where one of them changed."""
    steps = list(steps) if steps is not None else execution_steps(trace)
    request = trace.task.name
    entered = trace.of_kind("entered")
    sync = bool(entered and entered[0].get("thread"))
    state_row = "function state" if sync else "async function state"
    names: list[str] = [state_row]
    state: dict[str, str] = {state_row: "Not started"}
    await_rows: list[str] = []
    for step in steps:
        if step.task == request and step.kind == "await" and step.target:
            label = f"await {step.target}"
            if label not in await_rows and len(await_rows) < 8:
                await_rows.append(label)
                state[label] = "Not called"
    names.extend(await_rows)
    names.append("response")
    state["response"] = NONE
    watched_names = _watched_names(trace)
    for name in watched_names:
        names.append(name)
        state[name] = UNKNOWN
    watched_values = _watched_by_step(trace, steps)
    has_returned = bool(trace.of_kind("returned"))

    snapshots: list[tuple[int, dict[str, str]]] = []
    previous_function_step: int | None = None
    for position, step in enumerate(steps):
        label = f"await {step.target}"
        if step.task == request:
            if step.kind == "entered":
                state[state_row] = "Running"
            elif step.kind in ("await", "yield", "thread"):
                state[state_row] = "Paused (awaiting)"
                if label in state:
                    if previous_function_step is not None:
                        # The expression was evaluated (called) in the step before the await.
                        prev_state = snapshots[previous_function_step][1]
                        if prev_state.get(label) == "Not called":
                            prev_state[label] = "Called"
                    state[label] = "Sleeping" if _is_sleep(step.target) else "Pending"
            elif step.kind == "resumed":
                state[state_row] = "Resumed"
                for name in await_rows:
                    if state[name] in ("Pending", "Sleeping"):
                        state[name] = "Done"
            elif step.kind == "failed":
                state[state_row] = "Failed"
            elif step.kind == "cancelled":
                state[state_row] = "Cancelled"
        returned_value = step.output not in (NONE, UNKNOWN) and step.kind in (
            "resumed",
            "entered",
            "returned",
        )
        # Without a captured return value (before 3.12), the response is what was sent.
        body_sent = step.kind == "sent" and state["response"] == NONE and not has_returned
        if returned_value or body_sent:
            state["response"] = step.output
        state.update(watched_values.get(step.number, {}))
        snapshots.append((step.number, dict(state)))
        if step.task == request and step.kind in ("entered", "resumed"):
            previous_function_step = position
    final = dict(state)
    if final[state_row] not in ("Failed", "Cancelled"):
        final[state_row] = "Completed" if trace.outcome != "cancelled" else "Cancelled"
    for name in await_rows:
        final[name] = "N/A"
    columns = ["Start"]
    values: list[dict[str, str]] = [
        {
            name: ("Not started" if name == state_row else _initial(name, await_rows))
            for name in names
        }
    ]
    for number, snap in snapshots:
        if snap != values[-1]:
            columns.append(f"After Step {number}")
            values.append(snap)
    # Drop the last "After Step" column when Final repeats it exactly.
    columns.append("Final")
    values.append(final)
    rows = tuple((name, tuple(v.get(name, UNKNOWN) for v in values)) for name in names)
    return Tracker(tuple(columns), rows)


def _initial(name: str, await_rows: list[str]) -> str:
    if name in await_rows:
        return "Not called"
    if name == "response":
        return NONE
    return UNKNOWN


_SNAPSHOT_KINDS: Final = frozenset({"await", "yield", "resumed", "entered", "returned"})


def _watched_names(trace: Trace) -> list[str]:
    seen: list[str] = []
    for e in trace.events:
        for name in e.get("watched") or {}:
            if name not in seen:
                seen.append(name)
    return seen


def _watched_by_step(trace: Trace, steps: Sequence[Step]) -> dict[int, dict[str, str]]:
    """Watched snapshots keyed by the step number they belong to."""
    out: dict[int, dict[str, str]] = {}
    for e in trace.events:
        watched = e.get("watched")
        if not watched:
            continue
        offset = e.t_ns - trace.start_ns
        number = None
        for step in steps:
            if step.offset_ns <= offset and step.kind in (
                "await",
                "yield",
                "resumed",
                "entered",
                "returned",
            ):
                number = step.number
        if number is not None:
            out.setdefault(number, {}).update(watched)
    return out


# -- timeline ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lane:
    """One request on the shared time axis: (start_ns, end_ns, state) segments.

    States: ``running``, ``awaiting``, ``blocked``, ``after`` (work after the response).
    """

    label: str
    start_ns: int
    end_ns: int
    segments: tuple[tuple[int, int, str], ...]


def timeline_lanes(traces: Iterable[Trace]) -> list[Lane]:
    """One lane per trace, in order of arrival, on the traces' shared clock."""
    lanes = []
    for trace in sorted(traces, key=lambda t: t.start_ns):
        segments: list[tuple[int, int, str]] = []
        request = trace.task
        running_since: int | None = trace.start_ns
        waiting_since: int | None = None
        response_end: int | None = None
        for e in trace.events:
            if e.kind is EventKind.SENT and _final_body(e):
                response_end = e.t_ns
            if e.task != request:
                continue
            if e.kind is EventKind.YIELDED and running_since is not None:
                segments.append((running_since, e.t_ns, "running"))
                running_since, waiting_since = None, e.t_ns
            elif e.kind is EventKind.RESUMED and waiting_since is not None:
                segments.append((waiting_since, e.t_ns, "awaiting"))
                running_since, waiting_since = e.t_ns, None
        if running_since is not None:
            segments.append((running_since, trace.end_ns, "running"))
        if waiting_since is not None:
            segments.append((waiting_since, trace.end_ns, "awaiting"))
        if response_end is not None:
            segments = [s for seg in segments for s in _split(seg, response_end)]
        for b in trace.blocking():
            duration = int(b.get("duration_ns", 0))
            start = int(b.get("started_ns", b.t_ns - duration))
            segments.append((start, start + duration, "blocked"))
        label = f"{trace.method or trace.type.upper()} {trace.path}"
        lanes.append(Lane(label, trace.start_ns, trace.end_ns, tuple(segments)))
    return lanes


def _split(seg: tuple[int, int, str], at: int) -> list[tuple[int, int, str]]:
    start, end, state = seg
    if end <= at:
        return [seg]
    if start >= at:
        return [(start, end, "after")]
    return [(start, at, state), (at, end, "after")]


# -- key moments ------------------------------------------------------------------------


def key_moments(trace: Trace, *, lag_threshold_ns: int = 10_000_000) -> list[str]:
    """The few things about *trace* a developer should notice, most important first."""
    moments: list[str] = []
    for b in trace.blocking():
        where = _where(b)
        moments.append(
            f"Blocked the event loop for {fmt_duration(b.get('duration_ns'))}"
            f" at {where or b.get('function', '?')}: {b.get('code') or '?'}"
            " — no other request could run meanwhile."
        )
    waits: list[tuple[int, str]] = []
    thread_ns = 0
    pending: dict[int, Event] = {}
    for e in trace.events:
        if e.kind is EventKind.AWAITING:
            pending[e.task.id] = e
        elif e.kind is EventKind.RESUMED and e.task.id in pending:
            awaiting = pending.pop(e.task.id)
            waited = int(e.get("waited_ns", 0))
            if awaiting.get("thread") and not awaiting.get("cooperative"):
                thread_ns += waited
            if awaiting.get("function") or awaiting.get("thread"):
                waits.append((waited, f"{_target(awaiting)} ({_where(awaiting) or e.task.name})"))
            lag = e.get("lag_ns")
            if lag is not None and lag >= lag_threshold_ns:
                moments.append(
                    f"Loop lag {fmt_duration(lag)} resuming after {_target(awaiting)}:"
                    " the loop was busy when the wait ended."
                )
    for waited, what in sorted(waits, reverse=True)[:3]:
        moments.append(f"Waited {fmt_duration(waited)} on {what}.")
    if thread_ns:
        moments.append(f"{fmt_duration(thread_ns)} in the thread pool.")
    sent_end = [e.t_ns for e in trace.of_kind("sent") if _final_body(e)]
    if sent_end and trace.end_ns - sent_end[-1] >= 1_000_000:
        moments.append(
            f"{fmt_duration(trace.end_ns - sent_end[-1])} of work after the response was sent"
            " (background tasks): the client did not wait for it."
        )
    lanes = timeline_lanes([trace])
    running = sum(e - s for s, e, st in lanes[0].segments if st in ("running",))
    total = max(trace.duration_ns, 1)
    moments.append(
        f"Running {running * 100 / total:.0f} % of {fmt_duration(total)},"
        f" waiting {100 - running * 100 / total:.0f} %."
    )
    return moments
