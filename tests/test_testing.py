"""`asgitrace.testing`: order, awaits and blocking assertions, and their failure messages."""

from __future__ import annotations

import inspect
import itertools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from asgitrace import (
    AsgiTraceError,
    EventKind,
    TaskRef,
    Trace,
    TraceOrderError,
    Tracer,
    instrument,
    testing,
)
from asgitrace.testing import (
    BlockingError,
    assert_awaits,
    assert_no_blocking,
    assert_order,
    capture_traces,
    render_text,
)
from asgitrace.trace._match import Pattern, Step, match_order, pattern_text, step_text

TASK = TaskRef(1, "Task-1")
CHILD = TaskRef(2, "fetch")
MS = 1_000_000
HERE = os.path.relpath(__file__)


def make_trace(
    *events: tuple[Any, ...],
    path: str = "/wait",
    method: str | None = "GET",
    status: int | None = 200,
) -> Trace:
    """A finished trace whose clock ticks 1.5 ms at each reading."""
    ticks: Iterator[int] = itertools.count(0, 1_500_000)
    scope: dict[str, Any] = {"type": "http", "path": path}
    if method is not None:
        scope["method"] = method
    else:
        scope["type"] = "websocket"
    rec = Tracer(clock=lambda: next(ticks), max_events=100).recorder(scope, None)
    rec.task = TASK
    for event in events:
        rec.add(*event)
    rec.status = status
    return rec.finish(EventKind.COMPLETED, {"status": status})


ARRIVAL = (EventKind.RECEIVED, {"type": "http", "path": "/wait", "method": "GET"})
ENTERED = (EventKind.ENTERED, {"function": "wait_endpoint", "file": __file__, "line": 10})
SLEEP = (
    EventKind.AWAITING,
    {
        "function": "wait_endpoint",
        "file": __file__,
        "line": 11,
        "code": "await asyncio.sleep(1)",
        "target": "asyncio.sleep(1)",
        "cooperative": False,
    },
)
YIELDED = (EventKind.YIELDED, {"ready": 0})
RESUMED = (EventKind.RESUMED, {"waited_ns": 1000 * MS, "lag_ns": MS})
START = (EventKind.SENT, {"type": "http.response.start", "status": 200})
BODY = (EventKind.SENT, {"type": "http.response.body", "body_bytes": 26, "more_body": False})


def blocked(ms: float, **fields: Any) -> tuple[EventKind, dict[str, Any]]:
    return (EventKind.BLOCKED, {"duration_ns": int(ms * MS), **fields})


CULPRIT = {"file": __file__, "line": 42, "function": "block_endpoint", "code": "time.sleep(1)"}


@pytest.fixture
def reference() -> Trace:
    return make_trace(ARRIVAL, ENTERED, SLEEP, YIELDED, RESUMED, START, BODY)


# --- A real app -----------------------------------------------------------------------------------


async def get(app: FastAPI, tracer: Tracer, *paths: str) -> list[Trace]:
    traced = instrument(app, tracer)
    with capture_traces(tracer) as traces:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=traced), base_url="http://test"
        ) as client:
            for path in paths:
                assert (await client.get(path)).status_code == 200
    return traces


async def test_reference_endpoint_order_and_awaits_pass(
    reference_app: Callable[[], FastAPI],
) -> None:
    [trace] = await get(reference_app(), Tracer(), "/wait")

    assert_order(trace, "received", "awaiting", "yielded", "resumed", "sent")
    assert_order(trace, ("received", "/wait"), ("sent", {"status": 200}), "completed")
    assert_awaits(trace, "asyncio.sleep", exact=True)
    assert_awaits(trace, {"function": "wait_endpoint", "cooperative": False})
    assert_no_blocking(trace, threshold=0.05)


async def test_blocking_endpoint_fails_naming_the_culprit_line(
    reference_app: Callable[[], FastAPI],
) -> None:
    [trace] = await get(reference_app(), Tracer(blocking_threshold=0.05), "/block")

    with pytest.raises(BlockingError) as raised:
        assert_no_blocking([trace], threshold=0.05)

    message = str(raised.value)
    first, blank, culprit, code = message.splitlines()[:4]
    assert first.startswith("GET /block → 200 blocked the event loop for ")
    assert first.endswith(" ms, longer than the 50 ms allowed")
    assert blank == ""
    assert culprit.startswith("  GET /block → 200: ")
    assert culprit.endswith(f" at {_where(reference_app, 'time.sleep(0.12)')} in block_endpoint")
    assert code == "      time.sleep(0.12)"
    assert testing._FIX_BLOCKING in message
    assert message.endswith(render_text(trace).rstrip("\n"))
    with pytest.raises(TraceOrderError, match="no match for step 2: awaiting"):
        assert_order(trace, "received", "awaiting", "yielded", "resumed", "sent")


def _where(function: Callable[..., Any], text: str) -> str:
    """The line of *function*'s source holding *text*, as `file:line` (messages name it so)."""
    lines, first = inspect.getsourcelines(function)
    for number, line in enumerate(lines, first):
        if text in line:
            return f"{os.path.relpath(inspect.getsourcefile(function) or '?')}:{number}"
    raise AssertionError(text)  # pragma: no cover


# --- capture_traces and render_text ---------------------------------------------------------------


async def test_capture_traces_collects_only_the_block_and_stops_on_error(
    reference_app: Callable[[], FastAPI],
) -> None:
    app, tracer = reference_app(), Tracer()
    await get(app, tracer, "/wait")

    with pytest.raises(RuntimeError), capture_traces(tracer) as traces:
        raise RuntimeError

    assert traces == []
    assert len(tracer.traces) == 1


def test_render_text_is_plain_text_of_the_given_width(reference: Trace) -> None:
    text = render_text(reference, width=60)

    assert "/wait" in text
    assert "\x1b[" not in text
    assert max(len(line) for line in text.splitlines()) <= 60


def test_render_text_falls_back_to_a_list_of_events_when_rendering_fails(
    reference: Trace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(trace: Trace) -> Any:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr("asgitrace.views.render_trace", broken)

    text = render_text(reference)
    render_text(reference)

    lines = text.splitlines()
    assert lines[0] == "GET /wait → 200 (8 events)"
    assert lines[1] == "   1  received     type='http', path='/wait', method='GET'"
    assert lines[-1] == "   8  completed    status=200"
    assert [r.getMessage() for r in caplog.records] == [
        "asgitrace: rendering a trace as text failed and was disabled; the app is unaffected"
    ]


# --- assert_order ---------------------------------------------------------------------------------


def test_order_failure_says_what_was_expected_what_happened_and_shows_the_table(
    reference: Trace,
) -> None:
    with pytest.raises(TraceOrderError) as raised:
        assert_order(reference, "received", "blocked", "sent")

    assert str(raised.value).splitlines()[:6] == [
        "trace order mismatch",
        "  expected: received, blocked, sent",
        "  actual:   received, entered, awaiting, yielded, resumed, sent, sent, completed",
        "  no match for step 2: blocked "
        "(none of events 2-8 matches; earlier steps matched up to event 1)",
        "  request:  GET /wait → 200, 12.0 ms",
        "",
    ]
    assert str(raised.value).endswith(render_text(reference))
    assert raised.value.expected == "received, blocked, sent"


@pytest.mark.parametrize(
    ("steps", "exact", "detail"),
    [
        pytest.param(
            ("blocked",),
            False,
            "no match for step 1: blocked (none of the 8 events matches)",
            id="first step",
        ),
        pytest.param(
            ("completed", "sent"),
            False,
            "no match for step 2: sent (no events left after event 8)",
            id="nothing left",
        ),
        pytest.param(
            ("sent", "sent", "sent"),
            False,
            "no match for step 3: sent (event 8, the last, does not match)",
            id="one left",
        ),
        pytest.param(
            ("received", "awaiting"),
            True,
            "no match for step 2: awaiting (event 2 is entered)",
            id="exact",
        ),
        pytest.param(
            ("received", "entered"),
            True,
            "6 more event(s) after the last expected step (the first is event 3)",
            id="exact with events left",
        ),
    ],
)
def test_order_failure_says_where_the_search_stopped(
    reference: Trace, steps: tuple[Any, ...], exact: bool, detail: str
) -> None:
    with pytest.raises(TraceOrderError) as raised:
        assert_order(reference, *steps, exact=exact)

    assert str(raised.value).splitlines()[3] == f"  {detail}"


def test_order_of_a_request_without_status_or_method() -> None:
    trace = make_trace((EventKind.RECEIVED, {"type": "websocket"}), method=None, status=None)

    with pytest.raises(TraceOrderError) as raised:
        assert_order(trace, "sent")

    assert "  request:  WEBSOCKET /wait, 3.0 ms" in str(raised.value)


def test_order_accepts_sets_and_field_mappings(reference: Trace) -> None:
    assert_order(
        reference,
        {"received", ("entered", "wait_endpoint")},
        ("awaiting", {"target": "asyncio.sleep", "cooperative": False}),
        {("sent", 200), ("sent", "http.response.body")},
        "completed",
        exact=False,
    )


# --- the matcher ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        pytest.param(("sent", {"status": 200}), True, id="one field"),
        pytest.param(("sent", {"status": 200, "type": "start"}), True, id="text inside a field"),
        pytest.param(("sent", {"status": 201}), False, id="other value"),
        pytest.param(("sent", {"code": 200}), False, id="missing field"),
        pytest.param(("sent", {"status": "200"}), False, id="text is not a number"),
        pytest.param(("sent", {}), True, id="no fields"),
        pytest.param(("awaiting", {"cooperative": False}), True, id="flag"),
        pytest.param(("awaiting", {"cooperative": 0}), False, id="a number is not a flag"),
        pytest.param(("sent", {"more_body": 0}), False, id="nor a flag a number"),
        pytest.param(("sent", True), False, id="a flag matches only a flag"),
    ],
)
def test_field_mapping_patterns_compare_named_fields(
    reference: Trace, pattern: tuple[Any, Any], matches: bool
) -> None:
    assert (match_order(reference.events, [pattern]) is None) is matches


def test_a_field_that_cannot_be_compared_does_not_match() -> None:
    class Weird:
        def __eq__(self, other: object) -> bool:
            raise TypeError("no comparing")

        __hash__ = object.__hash__

    trace = make_trace((EventKind.SPAWNED, {"coro": Weird()}))

    assert match_order(trace.events, [("spawned", 3)]) is not None
    assert match_order(trace.events, [("spawned", {"coro": 3})]) is not None


def test_overlapping_set_members_match_in_either_order() -> None:
    """A bipartite matching: the specific pattern never loses its event to the general one."""
    trace = make_trace(START, BODY)

    orders: list[list[Pattern]] = [["sent", ("sent", 200)], [("sent", 200), "sent"]]
    for members in orders:
        steps: list[Step] = [frozenset(members)]
        assert match_order(trace.events, steps) is None
        assert match_order(trace.events, [*steps, "completed"], exact=True) is None
        assert match_order(list(reversed(trace.events[:2])), steps, exact=True) is None


def test_set_match_ends_as_early_as_possible() -> None:
    spawned = [(EventKind.SPAWNED, {"coro": name}, CHILD) for name in ("a", "b", "a")]
    trace = make_trace(*spawned, (EventKind.TASK_DONE, {"coro": "b"}, CHILD))

    assert (
        match_order(trace.events, [{("spawned", "a"), ("spawned", "b")}, ("spawned", "a")]) is None
    )
    assert match_order(trace.events, [{("spawned", "b")}, ("task_done", "b")], exact=False) is None


def test_exact_set_needs_one_event_per_member_right_there() -> None:
    trace = make_trace(START, BODY)

    assert match_order(trace.events, [{("sent", 200), "completed"}], exact=True) is not None
    assert match_order(trace.events, [{"sent", "completed"}, "sent"], exact=True) is not None
    mismatch = match_order(trace.events, ["sent", "sent", {"completed", "sent"}], exact=True)
    assert mismatch is not None
    assert (mismatch.step, mismatch.start) == (2, 2)


def test_empty_set_matches_nothing_and_consumes_nothing(reference: Trace) -> None:
    steps: list[Step] = ["received", frozenset(), "entered", "awaiting", "yielded", "resumed"]

    assert match_order(reference.events, [*steps, "sent", "sent", "completed"], exact=True) is None
    assert match_order(reference.events, [frozenset(), "completed"]) is None


def test_patterns_describe_themselves() -> None:
    assert pattern_text(("sent", {"status": 200, "type": "x"})) == "sent(status=200, type='x')"
    assert pattern_text((EventKind.SENT, 200)) == "sent(200)"
    assert step_text({"sent", ("awaiting", "sleep")}) == "{awaiting('sleep'), sent}"


# --- assert_awaits --------------------------------------------------------------------------------


def test_awaits_match_target_code_function_or_file(reference: Trace) -> None:
    for text in ("asyncio.sleep", "await asyncio.sleep(1)", "wait_endpoint", "test_testing"):
        assert_awaits(reference, text)
    assert_awaits(reference, {"asyncio.sleep"}, exact=True)
    assert_awaits(make_trace(ARRIVAL), exact=True)


def test_a_set_of_awaits_needs_every_member_in_any_order() -> None:
    """Each member of a set is an await of its own (issue 21: not just the first)."""
    fetch = (EventKind.AWAITING, {**SLEEP[1], "target": "httpx.get(url)"}, CHILD)
    for trace in (make_trace(ARRIVAL, SLEEP, fetch), make_trace(ARRIVAL, fetch, SLEEP)):
        assert_awaits(trace, {"asyncio.sleep", "httpx.get"}, exact=True)
        with pytest.raises(TraceOrderError):
            assert_awaits(trace, {"asyncio.sleep", "nowhere"})
        with pytest.raises(TraceOrderError):
            assert_awaits(trace, {"nowhere", "httpx.get"})


def test_a_failure_gives_the_requests_duration_in_milliseconds() -> None:
    ticks: Iterator[int] = itertools.count(0, 250 * MS)  # start, arrival, end: 500 ms
    rec = Tracer(clock=lambda: next(ticks)).recorder({"type": "http", "path": "/slow"}, None)
    rec.add(*ARRIVAL)
    trace = rec.finish(EventKind.COMPLETED, {"status": 200})

    with pytest.raises(TraceOrderError) as raised:
        assert_awaits(trace, "asyncio.sleep")
    assert "  request:  HTTP /slow, 500.0 ms\n" in str(raised.value)


def test_awaits_failure_lists_the_await_sites() -> None:
    child_sleep = (EventKind.AWAITING, {**SLEEP[1], "target": "httpx.get(url)"}, CHILD)
    trace = make_trace(ARRIVAL, SLEEP, child_sleep, (EventKind.AWAITING, {"code": "await x"}))

    with pytest.raises(TraceOrderError) as raised:
        assert_awaits(trace, "asyncio.sleep", "redis")

    lines = str(raised.value).splitlines()
    assert lines[:8] == [
        "trace order mismatch",
        "  expected: awaiting('asyncio.sleep'), awaiting('redis')",
        "  actual:   3 awaits",
        f"    1. asyncio.sleep(1) at {HERE}:11 in wait_endpoint",
        f"    2. httpx.get(url) at {HERE}:11 in wait_endpoint [task fetch]",
        "    3. await x at an unknown line",
        "  no match for await 2: awaiting('redis') "
        "(none of awaits 2-3 matches; earlier steps matched up to await 1)",
        "  request:  GET /wait → 200, 7.5 ms",
    ]


@pytest.mark.parametrize(
    ("awaits", "exact", "actual", "detail"),
    [
        pytest.param(
            ("asyncio.sleep",),
            False,
            "no awaits",
            "no match for await 1: awaiting('asyncio.sleep') (no awaits left)",
            id="none",
        ),
        pytest.param(
            (),
            True,
            "1 await",
            "1 more await(s) after the last expected one (the first is await 1)",
            id="unexpected",
        ),
        pytest.param(
            ("redis",),
            True,
            "1 await",
            "no match for await 1: awaiting('redis') (await 1 is asyncio.sleep(1))",
            id="exact",
        ),
        pytest.param(
            ("redis",),
            False,
            "1 await",
            "no match for await 1: awaiting('redis') (the only await does not match)",
            id="only",
        ),
        pytest.param(
            ("asyncio.sleep", "asyncio.sleep"),
            False,
            "1 await",
            "no match for await 2: awaiting('asyncio.sleep') (no awaits left after await 1)",
            id="too few",
        ),
    ],
)
def test_awaits_failure_details(
    awaits: tuple[str, ...], exact: bool, actual: str, detail: str
) -> None:
    trace = make_trace(SLEEP) if actual != "no awaits" else make_trace(ARRIVAL)

    with pytest.raises(TraceOrderError) as raised:
        assert_awaits(trace, *awaits, exact=exact)

    message = str(raised.value)
    assert f"  actual:   {actual}\n" in message  # the whole count: "1 await", not "1 awaits"
    assert f"  {detail}\n" in message
    assert raised.value.expected == (", ".join(f"awaiting({a!r})" for a in awaits) or "no awaits")


def test_await_of_a_site_without_a_function_shows_file_and_line() -> None:
    trace = make_trace((EventKind.AWAITING, {"file": "/elsewhere/app.py", "line": 3}))

    with pytest.raises(TraceOrderError) as raised:
        assert_awaits(trace, exact=True)

    assert "    1. ? at /elsewhere/app.py:3\n" in str(raised.value)


# --- assert_no_blocking ---------------------------------------------------------------------------


def test_no_blocking_passes_without_blocked_events_or_under_the_threshold(
    reference: Trace,
) -> None:
    tracer = Tracer()
    assert_no_blocking(tracer)
    assert_no_blocking([])
    assert_no_blocking(reference)
    assert_no_blocking(make_trace(blocked(50, **CULPRIT)), threshold=0.05)


def test_no_blocking_without_threshold_fails_on_any_blocked_event() -> None:
    trace = make_trace(blocked(20, **CULPRIT))

    with pytest.raises(BlockingError) as raised:
        assert_no_blocking(trace)

    first = str(raised.value).splitlines()[0]
    assert first == (
        "GET /wait → 200 blocked the event loop for 20.0 ms, past the tracer's blocking threshold"
    )
    assert raised.value.threshold is None
    assert raised.value.blocked == ((trace, trace.blocking()[0]),)
    assert isinstance(raised.value, AssertionError)
    assert isinstance(raised.value, AsgiTraceError)


async def test_no_blocking_reads_the_traces_of_a_tracer(
    reference_app: Callable[[], FastAPI],
) -> None:
    tracer = Tracer(blocking_threshold=0.05)
    await get(reference_app(), tracer, "/wait", "/block")

    with pytest.raises(BlockingError) as raised:
        assert_no_blocking(tracer, threshold=0.05)

    assert [t.path for t, _ in raised.value.blocked] == ["/block"]


def test_exactly_three_blocking_requests_show_all_three_tables_and_no_more_line() -> None:
    traces = [make_trace(blocked(120, **CULPRIT), path=p) for p in ("/a", "/b", "/c")]

    with pytest.raises(BlockingError) as raised:
        assert_no_blocking(traces, threshold=0.05)

    message = str(raised.value)
    assert (message.count("Execution table"), "not shown" in message) == (3, False)


def test_render_text_is_a_hundred_columns_wide_by_default() -> None:
    wide = (EventKind.AWAITING, {**SLEEP[1], "code": "await " + "x" * 300})
    trace = make_trace(ARRIVAL, wide, START, BODY)

    widths = {len(line) for line in render_text(trace).splitlines()}
    assert max(widths) == 100
    assert render_text(trace) == render_text(trace, width=100)


def test_blocking_message_lists_every_step_and_at_most_three_tables() -> None:
    traces = [
        make_trace(blocked(120, **CULPRIT), path="/a"),
        make_trace(blocked(80, after_response=True, **CULPRIT), blocked(90), path="/b"),
        make_trace(blocked(100, file="/x/app.py", line=3), path="/c"),
        make_trace(blocked(70, **CULPRIT), path="/d"),
        make_trace(blocked(10, **CULPRIT), path="/e"),
    ]

    with pytest.raises(BlockingError) as raised:
        assert_no_blocking(traces, threshold=0.05)

    message = str(raised.value)
    lines = message.splitlines()
    where = f"{HERE}:42 in block_endpoint"
    assert lines[:11] == [
        "5 steps blocked the event loop longer than the 50 ms allowed, in 4 requests",
        "",
        f"  GET /a → 200: 120.0 ms at {where}",
        "      time.sleep(1)",
        f"  GET /b → 200: 80.0 ms at {where} (after the response was sent)",
        "      time.sleep(1)",
        "  GET /b → 200: 90.0 ms at an unknown line",
        "      (the watchdog sampled no stack during this step)",
        "  GET /c → 200: 100.0 ms at /x/app.py:3",
        f"  GET /d → 200: 70.0 ms at {where}",
        "      time.sleep(1)",
    ]
    assert message.count("/e") == 0
    assert "(and 1 more request(s) not shown)" in message
    assert lines[-1] == "(and 1 more request(s) not shown)"


def test_blocking_message_of_several_steps_in_one_request() -> None:
    trace = make_trace(blocked(60, **CULPRIT), blocked(70, **CULPRIT))

    error = BlockingError([(trace, e) for e in trace.blocking()], 0.05, hint="Raise it.")

    first = str(error).splitlines()[0]
    assert first == "2 steps blocked the event loop longer than the 50 ms allowed, in request"
    assert f"{testing._FIX_BLOCKING}\n\nRaise it.\n\n" in str(error)


def test_paths_outside_the_working_directory_stay_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    trace = make_trace(blocked(60, **CULPRIT))

    with pytest.raises(BlockingError) as raised:
        assert_no_blocking(trace)

    assert f" at {__file__}:42 in block_endpoint" in str(raised.value)


def test_paths_on_another_drive_stay_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    def relpath(path: str) -> str:
        raise ValueError("path is on mount 'Z:', start on mount 'C:'")

    monkeypatch.setattr(os.path, "relpath", relpath)

    from asgitrace.views import short_path

    assert short_path("Z:\\app.py") == "Z:\\app.py"


def test_testing_imports_no_test_framework_or_client() -> None:
    code = (
        "import sys, asgitrace.testing; "
        "print(sorted({'pytest', 'httpx', 'starlette', '_pytest'} & set(sys.modules)))"
    )
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_public_names_of_testing() -> None:
    assert testing.__all__ == sorted(testing.__all__)
    assert all(hasattr(testing, name) for name in testing.__all__)
