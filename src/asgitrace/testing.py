"""Assert what the event loop did, in any test framework (this module imports no pytest).

* `capture_traces` collects the traces a tracer finishes inside a ``with`` block.
* `assert_order` checks a trace's events against an expected order.
* `assert_awaits` checks where a request suspended, and on what.
* `assert_no_blocking` fails when a step held the event loop too long.
* `render_text` is the execution table as plain text, as the failure messages show it.

Every failure is an `AssertionError` whose message says what was expected, what
happened, and ends with the execution table of the request.

The pytest plugin (``asgitrace.pytest_plugin``) builds its fixtures and its
``@pytest.mark.asgitrace`` marker on these helpers.

.. versionadded:: 0.1
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

from ._support import AsgiTraceError, TraceOrderError, log_failure
from .capture import Tracer
from .trace import (
    Event,
    Mismatch,
    Pattern,
    Step,
    Trace,
    match_order,
    mismatch_text,
    request_label,
    step_text,
)

__all__ = [
    "AwaitStep",
    "BlockingError",
    "Pattern",
    "Step",
    "assert_awaits",
    "assert_no_blocking",
    "assert_order",
    "capture_traces",
    "render_focus",
    "render_text",
]

AwaitStep: TypeAlias = "str | Mapping[str, Any] | set[str] | frozenset[str]"
"""One expected await of `assert_awaits`.

A text found in the await's target, code line, function or file (``"asyncio.sleep"``),
a mapping of ``awaiting`` fields to values (``{"target": "asyncio.sleep",
"cooperative": False}``), or a set of texts for awaits that happen in any order.
"""

_FIX_BLOCKING: str = (
    "While one step runs, the event loop serves nothing else: every other request waits.\n"
    "Await an async equivalent (asyncio.sleep, an async client or driver), or move the\n"
    "blocking call to a thread (await asyncio.to_thread(...), or a plain `def` endpoint)."
)
"""The advice that `BlockingError` messages give."""

_MAX_TABLES = 3


@contextmanager
def capture_traces(tracer: Tracer) -> Iterator[list[Trace]]:
    """Collect the traces *tracer* finishes inside the ``with`` block into a live list.

    Only the traces finished inside the block are collected, even when *tracer* has
    others in its store. The callback is removed when the block exits, even on error.

    Example:
        ```python
        with capture_traces(tracer) as traces:
            client.get("/wait")
        assert_order(traces[0], "received", "awaiting", "resumed", "sent")
        ```

    .. versionadded:: 0.1
    """
    captured: list[Trace] = []
    tracer.add_callback(captured.append)
    try:
        yield captured
    finally:
        tracer.remove_callback(captured.append)


def render_focus(
    trace: Trace, event: Event | None = None, *, width: int = 100, around: int = 2
) -> str:
    """Return *trace*'s key moments and the execution-table rows around *event* (its
    first blocking step by default), as plain text: what a failure shows unless asked
    for the whole table.

    .. versionadded:: 0.1
    """
    try:
        from rich.console import Console, Group
        from rich.text import Text

        from .views import ExecutionTable, KeyMoments, execution_steps

        steps = execution_steps(trace)
        culprit = event if event is not None else next(iter(trace.blocking()), None)
        number = len(steps)
        if culprit is not None:
            offset = culprit.t_ns - trace.start_ns
            marked = [s for s in steps if s.mark == "blocked"] or steps
            number = min(marked, key=lambda s: abs(s.offset_ns - offset)).number
        console = Console(
            file=io.StringIO(),
            width=width,
            color_system=None,
            record=True,
            legacy_windows=False,
            force_jupyter=False,
        )
        console.print(
            Group(
                KeyMoments(trace),
                Text(""),
                ExecutionTable(trace, rows=(number - around, number + around)),
            )
        )
        return console.export_text(styles=False)
    except Exception as exc:
        log_failure("rendering a trace as text", exc)
        return render_text(trace, width=width)


def render_text(trace: Trace, *, width: int = 100) -> str:
    """Return the execution table of *trace* as plain text (no colours, *width* columns).

    It is what failure messages show. Should rendering fail, a plain list of the events
    comes back instead (the failure is logged once): a broken view never hides a test
    failure.

    .. versionadded:: 0.1
    """
    try:
        from rich.console import Console

        from .views import render_trace

        console = Console(
            file=io.StringIO(),
            width=width,
            color_system=None,
            record=True,
            legacy_windows=False,
            force_jupyter=False,
        )
        console.print(render_trace(trace))
        return console.export_text(styles=False)
    except Exception as exc:
        log_failure("rendering a trace as text", exc)
        lines = [f"{_request(trace)} ({len(trace.raw_events)} events)"]
        for index, event in enumerate(trace.events, 1):
            details = ", ".join(f"{k}={v!r}" for k, v in event.fields.items())
            lines.append(f"{index:>4}  {event.kind.value:<12} {details}")
        return "\n".join(lines) + "\n"


def assert_order(trace: Trace, *steps: Step, exact: bool = False) -> None:
    """Assert that *trace*'s events happened in this order.

    Like `Trace.assert_order`, with the request and its execution table in the message.

    Args:
        trace: The request's trace.
        steps: Patterns (see `Pattern`): kinds (``"received"``), kinds with a value to
            find in the event's fields (``("awaiting", "asyncio.sleep")``,
            ``("sent", 200)``), kinds with a mapping of fields
            (``("sent", {"status": 200})``); or sets of patterns for events that may
            happen in any order (``{("spawned", "a"), ("spawned", "b")}``).
        exact: Require exactly these events, not just this subsequence.

    Raises:
        TraceOrderError: naming the expected steps, the actual events and the first step
            that did not match, followed by the execution table.
        ValueError: a pattern names a kind that does not exist.

    .. versionadded:: 0.1
    """
    __tracebackhide__ = True
    events = trace.events
    mismatch = match_order(events, steps, exact=exact)
    if mismatch is not None:
        raise TraceOrderError(
            ", ".join(step_text(s) for s in steps),
            ", ".join(e.kind.value for e in events),
            _detail(trace, steps, mismatch, events, "event", exact=exact),
        )


def assert_awaits(trace: Trace, *awaits: AwaitStep, exact: bool = False) -> None:
    """Assert where *trace*'s request suspended (its ``awaiting`` events), in order.

    Only ``awaiting`` events are considered, so ``exact=True`` means "these awaits and no
    others", and ``assert_awaits(trace, exact=True)`` that the request never suspended.

    Args:
        trace: The request's trace (awaits of its child tasks count too).
        awaits: For each expected await: a text found in its target, code line, function
            or file (``"asyncio.sleep"``, ``"wait_endpoint"``), a mapping of fields to
            values (``{"target": "asyncio.sleep", "cooperative": False}``), or a set of
            texts for awaits that happen in any order.
        exact: Require exactly these awaits, not just this subsequence.

    Raises:
        TraceOrderError: naming the expected awaits, the actual ones (target, file,
            line and function) and the first that did not match, followed by the
            execution table.

    .. versionadded:: 0.1
    """
    __tracebackhide__ = True
    steps = [_await_step(a) for a in awaits]
    events = trace.awaits()
    mismatch = match_order(events, steps, exact=exact)
    if mismatch is not None:
        sites = "".join(f"\n    {i}. {_await_site(trace, e)}" for i, e in enumerate(events, 1))
        count = f"{len(events)} await{'' if len(events) == 1 else 's'}" if events else "no awaits"
        raise TraceOrderError(
            ", ".join(step_text(s) for s in steps) or "no awaits",
            count + sites,
            _detail(trace, steps, mismatch, events, "await", exact=exact),
        )


def _await_step(expected: AwaitStep) -> Step:
    if isinstance(expected, set | frozenset):
        return frozenset(("awaiting", text) for text in expected)
    return ("awaiting", expected)


def _await_site(trace: Trace, event: Event) -> str:
    what = event.get("target") or event.get("code") or "?"
    text = f"{what} at {_location(event)}"
    if event.task != trace.task:
        text += f" [task {event.task.name}]"
    return text


def _location(event: Event) -> str:
    file = event.get("file")
    if not file:
        return "an unknown line"
    from .views import short_path  # the views' one rule for places (rich loads lazily)

    text = f"{short_path(str(file))}:{event.get('line')}"
    function = event.get("function")
    return f"{text} in {function}" if function else text


def _detail(
    trace: Trace,
    steps: Sequence[Step],
    mismatch: Mismatch,
    events: Sequence[Event],
    noun: str,
    *,
    exact: bool,
) -> str:
    if noun == "event":
        reason = mismatch_text(steps, mismatch)
    elif mismatch.extra:
        reason = f"{mismatch.extra} more await(s) after the last expected one"
    else:
        reason = f"no match for await {mismatch.step + 1}: {step_text(steps[mismatch.step])}"
    start, total = mismatch.start, len(events)
    if mismatch.extra:
        where = f"the first is {noun} {start + 1}"
    elif start >= total:
        where = f"no {noun}s left" + (f" after {noun} {start}" if start else "")
    elif exact:
        where = f"{noun} {start + 1} is {_event_text(events[start], noun)}"
    elif start + 1 == total:
        where = (
            f"{noun} {total}, the last, does not match"
            if start
            else f"the only {noun} does not match"
        )
    elif start:
        where = (
            f"none of {noun}s {start + 1}-{total} matches; "
            f"earlier steps matched up to {noun} {start}"
        )
    else:
        where = f"none of the {total} {noun}s matches"
    return (
        f"{reason} ({where})\n"
        f"  request:  {_request(trace)}, {trace.duration * 1e3:.1f} ms\n\n" + render_text(trace)
    )


def _event_text(event: Event, noun: str) -> str:
    if noun == "await":
        return str(event.get("target") or event.get("code"))
    return event.kind.value


def _request(trace: Trace) -> str:
    method = request_label(trace)
    status = f" → {trace.status}" if trace.status is not None else ""
    return f"{method} {trace.path}{status}"


class BlockingError(AsgiTraceError, AssertionError):
    """Traced requests blocked the event loop longer than allowed.

    Its message names each blocking step (duration, file, line, function and code), says
    how to fix it, and shows the execution tables of the requests.

    Args:
        blocked: ``(trace, event)`` pairs: each a ``blocked`` event over the limit and
            the trace it belongs to.
        threshold: The limit in seconds, or ``None`` for "any ``blocked`` event".
        hint: A paragraph added before the tables (the pytest plugin says there how to
            change the limit).
        tables: ``"full"``: each request's whole execution table; ``"focus"``: its key
            moments and the rows around the blocking step; ``"none"``.

    Attributes:
        blocked: The ``(trace, event)`` pairs.
        threshold: The limit in seconds, or ``None``.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        blocked: Sequence[tuple[Trace, Event]],
        threshold: float | None = None,
        *,
        hint: str = "",
        tables: str = "full",
    ) -> None:
        self.blocked = tuple(blocked)
        self.threshold = threshold
        super().__init__(_blocking_message(self.blocked, threshold, hint, tables))


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f} ms"


def _blocking_message(
    blocked: Sequence[tuple[Trace, Event]], threshold: float | None, hint: str, tables: str
) -> str:
    limit = (
        f"longer than the {threshold * 1e3:g} ms allowed"
        if threshold is not None
        else "past the tracer's blocking threshold"
    )
    traces: list[Trace] = []
    for trace, _ in blocked:
        if trace not in traces:
            traces.append(trace)
    if len(blocked) == 1:
        trace, event = blocked[0]
        head = (
            f"{_request(trace)} blocked the event loop for "
            f"{_ms(event.get('duration_ns', 0))}, {limit}"
        )
    else:
        many = "request" if len(traces) == 1 else f"{len(traces)} requests"
        head = f"{len(blocked)} steps blocked the event loop {limit}, in {many}"
    lines = [head, ""]
    for trace, event in blocked:
        line = f"  {_request(trace)}: {_ms(event.get('duration_ns', 0))} at {_location(event)}"
        if event.get("after_response"):
            line += " (after the response was sent)"
        lines.append(line)
        if event.get("code"):
            lines.append(f"      {event.get('code')}")
        elif not event.get("file"):
            lines.append("      (the watchdog sampled no stack during this step)")
    lines += ["", _FIX_BLOCKING]
    if hint:
        lines += ["", hint]
    if tables == "none":
        return "\n".join(lines)
    for trace in traces[:_MAX_TABLES]:
        if tables == "focus":
            culprit = next(event for t, event in blocked if t is trace)
            lines += ["", render_focus(trace, culprit).rstrip("\n")]
        else:
            lines += ["", render_text(trace).rstrip("\n")]
    if len(traces) > _MAX_TABLES:
        lines += ["", f"(and {len(traces) - _MAX_TABLES} more request(s) not shown)"]
    return "\n".join(lines)


def _blocked_over(
    traces: Trace | Iterable[Trace] | Tracer, threshold: float | None = None
) -> list[tuple[Trace, Event]]:
    """The ``blocked`` events longer than *threshold* seconds (any, for ``None``)."""
    if isinstance(traces, Tracer):
        traces = traces.traces
    elif isinstance(traces, Trace):
        traces = (traces,)
    limit_ns = None if threshold is None else threshold * 1e9
    return [
        (trace, event)
        for trace in traces
        for event in trace.blocking()
        if limit_ns is None or event.get("duration_ns", 0) > limit_ns
    ]


def assert_no_blocking(
    traces: Trace | Iterable[Trace] | Tracer, threshold: float | None = None
) -> None:
    """Assert that no traced request blocked the event loop longer than *threshold*.

    A step blocks the loop when it runs without awaiting anything that suspends, like a
    ``time.sleep`` or a synchronous driver call in an ``async def`` endpoint. Only steps
    that the tracer recorded as ``blocked`` are known: set
    ``Tracer(blocking_threshold=...)`` to at most *threshold*.

    Args:
        traces: A trace, several, or a `Tracer` (its stored traces). None at all passes.
        threshold: Seconds one step may hold the loop; ``None`` fails on any ``blocked``
            event.

    Raises:
        BlockingError: naming each blocking step's duration, file, line, function and
            code, with the execution tables of the requests.

    .. versionadded:: 0.1
    """
    __tracebackhide__ = True
    blocked = _blocked_over(traces, threshold)
    if blocked:
        raise BlockingError(blocked, threshold)
