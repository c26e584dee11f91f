"""The trace model: queries, outcome, order assertions, (de)serialisation and rendering."""

from __future__ import annotations

import asyncio
import enum
import io
import itertools
import json
from collections.abc import Iterator, Mapping
from textwrap import dedent
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from rich.console import Console

from asgitrace import (
    AsgiTraceError,
    Event,
    EventKind,
    ExecutionTable,
    TaskRef,
    Timeline,
    Trace,
    TraceOrderError,
    Tracer,
    instrument,
    print_trace,
)
from asgitrace.trace.codec import DECODERS
from asgitrace.views._render import describe_event, render_events

TASK = TaskRef(1, "Task-1")
OTHER = TaskRef(2, "worker")
MS = 1_000_000

Fields = Mapping[str, Any]


def make_trace(
    *events: tuple[EventKind, Any] | tuple[EventKind, Any, TaskRef],
    end: tuple[EventKind, Fields] = (EventKind.COMPLETED, {"status": 200}),
    scope: dict[str, Any] | None = None,
    limit: int = 100,
    status: int | None = 200,
) -> Trace:
    """A finished trace whose clock ticks 1.5 ms at each reading (the start is 0)."""
    ticks: Iterator[int] = itertools.count(0, 1_500_000)
    tracer = Tracer(clock=lambda: next(ticks), max_events=limit)
    rec = tracer.recorder(scope or {"type": "http", "method": "GET", "path": "/wait"}, None)
    rec.task = TASK
    rec.start_wall = 0.0
    for event in events:
        rec.add(*event)
    rec.status = status
    return rec.finish(*end)


ARRIVAL = (EventKind.RECEIVED, {"type": "http", "path": "/wait", "method": "GET"})
REQUEST = (EventKind.RECEIVED, {"type": "http.request", "body_bytes": 0, "more_body": False})
SLEEP = (EventKind.AWAITING, {"target": "asyncio.sleep(0.02)", "line": "await asyncio.sleep"})
YIELDED = (EventKind.YIELDED, {"ready": 0})
RESUMED = (EventKind.RESUMED, {"waited_ns": 20 * MS})
START = (EventKind.SENT, {"type": "http.response.start", "status": 200})
BODY = (EventKind.SENT, {"type": "http.response.body", "body_bytes": 26, "more_body": False})
PART = (EventKind.SENT, {"type": "http.response.body", "body_bytes": 4, "more_body": True})
GONE = (EventKind.DISCONNECTED, {"type": "http.disconnect"})


@pytest.fixture
def reference() -> Trace:
    """The tutorial's request, as the engine records it."""
    return make_trace(ARRIVAL, REQUEST, SLEEP, YIELDED, RESUMED, START, BODY)


# --- Queries --------------------------------------------------------------------------------------


def test_kinds_and_events_are_in_recording_order(reference: Trace) -> None:
    expected = ["received", "received", "awaiting", "yielded", "resumed", "sent", "sent"]

    assert list(reference.kinds) == [*expected, "completed"]
    assert [e.kind for e in reference.events] == list(reference.kinds)
    assert [e.seq for e in reference.events] == sorted(e.seq for e in reference.events)
    assert len({e.seq for e in reference.events}) == len(reference.events)
    assert [e.t_ns for e in reference.events] == [n * 1_500_000 for n in range(1, 9)]


def test_event_kinds_compare_equal_to_their_names() -> None:
    assert (EventKind.AWAITING == "awaiting", str(EventKind.AWAITING)) == (True, "awaiting")


def test_of_kind_selects_events_of_any_listed_kind(reference: Trace) -> None:
    picked = reference.of_kind("sent", EventKind.AWAITING)

    assert [e.kind.value for e in picked] == ["awaiting", "sent", "sent"]
    assert reference.of_kind("blocked") == ()


def test_awaits_and_blocking_are_shortcuts_for_their_kinds() -> None:
    blocked = (EventKind.BLOCKED, {"duration_ns": 150 * MS})
    trace = make_trace(ARRIVAL, SLEEP, blocked, START, BODY)

    assert [e.get("target") for e in trace.awaits()] == ["asyncio.sleep(0.02)"]
    assert [e.get("duration_ns") for e in trace.blocking()] == [150 * MS]


def test_event_get_returns_a_field_or_the_default(reference: Trace) -> None:
    start = reference.of_kind("sent")[0]

    assert (start.get("status"), start.get("missing"), start.get("missing", 7)) == (200, None, 7)


def test_event_fields_cannot_be_changed(reference: Trace) -> None:
    start = reference.of_kind("sent")[0]

    with pytest.raises(TypeError):
        start.fields["status"] = 500  # type: ignore[index]
    assert reference.of_kind("sent")[0].get("status") == 200


def test_events_of_other_tasks_keep_their_task(reference: Trace) -> None:
    trace = make_trace(ARRIVAL, (EventKind.SPAWNED, {"name": "worker"}, OTHER), START)

    assert [e.task for e in trace.events] == [TASK, OTHER, TASK, TASK]
    assert trace.task == TASK


def test_duration_runs_from_arrival_to_the_terminal_event(reference: Trace) -> None:
    # The start is the first clock reading (0); each later reading adds 1.5 ms.
    assert (reference.start_ns, reference.end_ns) == (0, 8 * 1_500_000)
    assert (reference.duration_ns, reference.duration) == (12 * MS, 0.012)


@pytest.mark.parametrize(
    ("events", "end", "outcome"),
    [
        pytest.param((START, BODY), (EventKind.COMPLETED, {"status": 200}), "completed", id="ok"),
        pytest.param(
            (START,),
            (EventKind.FAILED, {"exception": "KeyError", "status": 200}),
            "failed",
            id="failed",
        ),
        pytest.param((START, PART), (EventKind.CANCELLED, {}), "cancelled", id="cancelled"),
        pytest.param((START, PART, GONE), (EventKind.COMPLETED, {}), "disconnected", id="mid-body"),
        pytest.param((GONE,), (EventKind.COMPLETED, {}), "disconnected", id="before the start"),
        pytest.param((START, BODY, GONE), (EventKind.COMPLETED, {}), "completed", id="after body"),
        pytest.param(
            (
                (EventKind.SENT, {"type": "websocket.close", "code": 1000}),
                (EventKind.DISCONNECTED, {"type": "websocket.disconnect"}),
            ),
            (EventKind.COMPLETED, {}),
            "completed",
            id="after websocket close",
        ),
        pytest.param(
            (
                (EventKind.SENT, {"type": "websocket.http.response.start", "status": 403}),
                (EventKind.SENT, {"type": "websocket.http.response.body", "body_bytes": 2}),
                (EventKind.DISCONNECTED, {"type": "websocket.disconnect"}),
            ),
            (EventKind.COMPLETED, {}),
            "completed",
            id="after websocket denial body",
        ),
    ],
)
def test_outcome_tells_how_the_request_ended(
    events: tuple[tuple[EventKind, Fields], ...], end: tuple[EventKind, Fields], outcome: str
) -> None:
    assert make_trace(*events, end=end).outcome == outcome


def test_client_leaving_during_a_streamed_websocket_denial_is_disconnected() -> None:
    trace = make_trace(
        (EventKind.SENT, {"type": "websocket.http.response.start", "status": 403}),
        (
            EventKind.SENT,
            {"type": "websocket.http.response.body", "body_bytes": 2, "more_body": True},
        ),
        (EventKind.DISCONNECTED, {"type": "websocket.disconnect"}),
        end=(EventKind.COMPLETED, {"status": 403}),
    )

    assert trace.outcome == "disconnected"


def test_exception_names_the_type_only_for_failed_traces(reference: Trace) -> None:
    failed = make_trace(START, end=(EventKind.FAILED, {"exception": "KeyError", "status": 200}))

    assert (failed.exception, reference.exception) == ("KeyError", None)


# --- Lazy fields ---------------------------------------------------------------------------------


class Resolutions:
    """A resolver for lazy fields ``("test-await", line)`` that counts its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, raw: tuple[Any, ...], context: Any) -> Mapping[str, Any]:
        self.calls.append(raw)
        return {"target": "asyncio.sleep(1)", "line": raw[1]}


def broken_resolver(raw: tuple[Any, ...], context: Any) -> Mapping[str, Any]:
    raise RuntimeError("source gone")


def test_lazy_fields_are_resolved_on_first_read_and_only_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolutions = Resolutions()
    monkeypatch.setitem(DECODERS, "test-await", resolutions)
    trace = make_trace((EventKind.AWAITING, ("test-await", 12)))

    assert trace.kinds[0] == EventKind.AWAITING  # kinds do not resolve details
    assert resolutions.calls == []
    first = trace.events
    second = trace.events

    assert first is second
    assert resolutions.calls == [("test-await", 12)]
    assert dict(first[0].fields) == {"target": "asyncio.sleep(1)", "line": 12}


def test_lazy_fields_that_fail_to_resolve_are_marked_and_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(DECODERS, "test-broken", broken_resolver)
    trace = make_trace(
        (EventKind.AWAITING, ("test-broken", 1)),
        (EventKind.AWAITING, ("test-broken", 2)),
        (EventKind.AWAITING, ("test-unregistered",)),
    )

    fields = [dict(e.fields) for e in trace.of_kind("awaiting")]

    assert fields == [
        {"unresolved": "test-broken"},
        {"unresolved": "test-broken"},
        {"unresolved": "test-unregistered"},
    ]
    records = [r for r in caplog.records if r.name == "asgitrace"]
    assert len(records) == 1
    assert "resolving event details" in records[0].getMessage()


# --- assert_order --------------------------------------------------------------------------------


def test_assert_order_accepts_a_subsequence(reference: Trace) -> None:
    reference.assert_order("received", "awaiting", "resumed", "completed")
    reference.assert_order(EventKind.SENT, EventKind.COMPLETED)
    reference.assert_order()


def test_assert_order_rejects_steps_out_of_order(reference: Trace) -> None:
    with pytest.raises(TraceOrderError) as raised:
        reference.assert_order("sent", "awaiting")

    assert raised.value.expected == "sent, awaiting"
    assert raised.value.actual == (
        "received, received, awaiting, yielded, resumed, sent, sent, completed"
    )
    assert str(raised.value) == dedent(
        """\
        trace order mismatch
          expected: sent, awaiting
          actual:   received, received, awaiting, yielded, resumed, sent, sent, completed
          no match for step 2: awaiting"""
    )


def test_assert_order_failure_is_an_assertion_error(reference: Trace) -> None:
    with pytest.raises(AssertionError):
        reference.assert_order("blocked")
    assert issubclass(TraceOrderError, AsgiTraceError)


def test_each_step_consumes_one_event(reference: Trace) -> None:
    reference.assert_order("sent", "sent")
    with pytest.raises(TraceOrderError, match="no match for step 3: sent"):
        reference.assert_order("sent", "sent", "sent")


def test_exact_order_must_match_every_event(reference: Trace) -> None:
    reference.assert_order(
        "received",
        "received",
        ("awaiting", "asyncio.sleep"),
        "yielded",
        "resumed",
        ("sent", 200),
        ("sent", "http.response.body"),
        "completed",
        exact=True,
    )


def test_exact_order_rejects_an_event_between_steps(reference: Trace) -> None:
    with pytest.raises(TraceOrderError, match="no match for step 2: awaiting"):
        reference.assert_order("received", "awaiting", exact=True)


def test_exact_order_rejects_events_after_the_last_step(reference: Trace) -> None:
    with pytest.raises(TraceOrderError) as raised:
        reference.assert_order("received", "received", "awaiting", exact=True)

    assert str(raised.value).endswith("5 more event(s) after the last expected step")


def test_exact_order_rejects_missing_events(reference: Trace) -> None:
    steps = [e.kind for e in reference.events]

    with pytest.raises(TraceOrderError, match="no match for step 9: completed"):
        reference.assert_order(*steps, "completed", exact=True)


def test_set_of_steps_matches_in_any_order() -> None:
    a = (EventKind.SPAWNED, {"name": "a"}, OTHER)
    b = (EventKind.SPAWNED, {"name": "b"}, OTHER)
    first = make_trace(ARRIVAL, a, b, START)
    second = make_trace(ARRIVAL, b, a, START)

    for trace in (first, second):
        trace.assert_order("received", {("spawned", "a"), ("spawned", "b")}, "sent")
        trace.assert_order(
            "received", {("spawned", "a"), ("spawned", "b")}, "sent", "completed", exact=True
        )
        trace.assert_order(frozenset({("spawned", "b"), "received"}))


def test_set_of_steps_fails_when_one_member_is_missing() -> None:
    trace = make_trace(ARRIVAL, (EventKind.SPAWNED, {"name": "a"}, OTHER), START)

    with pytest.raises(TraceOrderError) as raised:
        trace.assert_order({("spawned", "a"), ("spawned", "b")})

    assert "expected: {spawned('a'), spawned('b')}" in str(raised.value)
    assert "no match for step 1: {spawned('a'), spawned('b')}" in str(raised.value)


def test_exact_set_rejects_an_event_outside_the_set() -> None:
    trace = make_trace(ARRIVAL, START)

    with pytest.raises(TraceOrderError):
        trace.assert_order({"received", "completed"}, exact=True)


class OrderedSet(set):  # type: ignore[type-arg]
    """A set that iterates in the order it was built (a plain set's order is arbitrary)."""

    def __init__(self, *items: Any) -> None:
        super().__init__(items)
        self._order = items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._order)


@pytest.mark.parametrize(
    "order",
    [(("sent", 200), "sent"), ("sent", ("sent", 200))],
    ids=["specific first", "general first"],
)
def test_overlapping_set_members_match_whatever_the_iteration_order(
    order: tuple[Any, Any],
) -> None:
    """A plain set's order depends on PYTHONHASHSEED: the match must not."""
    trace = make_trace(START, BODY)

    trace.assert_order(OrderedSet(*order))
    trace.assert_order(OrderedSet(*order), "completed", exact=True)


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        pytest.param(("awaiting", "asyncio.sleep"), True, id="text inside a field"),
        pytest.param(("awaiting", "asyncio.sleep(0.02)"), True, id="whole field"),
        pytest.param(("awaiting", "time.sleep"), False, id="other text"),
        pytest.param(("sent", 200), True, id="equal value"),
        pytest.param(("sent", 201), False, id="other value"),
        pytest.param(("sent", 20), False, id="numbers are not searched as text"),
        pytest.param((EventKind.SENT, "http.response.start"), True, id="EventKind and text"),
        pytest.param(("resumed", 20 * MS), True, id="integer field"),
    ],
)
def test_pattern_with_a_value_looks_inside_the_fields(
    reference: Trace, pattern: tuple[Any, Any], matches: bool
) -> None:
    if matches:
        reference.assert_order(pattern)
    else:
        with pytest.raises(TraceOrderError):
            reference.assert_order(pattern)


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(("recieved",), id="misspelt kind"),
        pytest.param((("sleeping", "x"),), id="in a pattern"),
        pytest.param(({"sent", "paused"},), id="in a set"),
    ],
)
def test_unknown_kind_is_a_value_error_naming_the_known_kinds(
    reference: Trace, steps: tuple[Any, ...]
) -> None:
    with pytest.raises(ValueError, match="unknown event kind") as raised:
        reference.assert_order(*steps)

    assert "awaiting" in str(raised.value)
    assert not isinstance(raised.value, TraceOrderError)


def test_trace_order_error_without_detail_has_two_lines() -> None:
    error = TraceOrderError("a, b", "a")

    assert str(error) == "trace order mismatch\n  expected: a, b\n  actual:   a"


# --- to_dict / from_dict -------------------------------------------------------------------------


def test_to_dict_is_json_ready_and_complete(reference: Trace) -> None:
    data = reference.to_dict()

    assert json.loads(json.dumps(data)) == data
    assert {k: data[k] for k in data if k != "events"} == {
        "schema_version": 1,
        "id": reference.id,
        "type": "http",
        "method": "GET",
        "path": "/wait",
        "route": None,
        "query": "",
        "headers": [],
        "response_headers": [],
        "status": 200,
        "outcome": "completed",
        "start": 0.0,
        "start_ns": 0,
        "end_ns": 12 * MS,
        "duration_ns": 12 * MS,
        "dropped": 0,
    }
    assert data["events"][-1] == {
        "seq": reference.events[-1].seq,
        "t_ns": 12 * MS,
        "kind": "completed",
        "task": {"id": 1, "name": "Task-1"},
        "fields": {"status": 200},
    }


def test_trace_ids_are_unique_hex() -> None:
    ids = {make_trace().id for _ in range(50)}

    assert len(ids) == 50
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


class Colour(enum.Enum):
    RED = "red"


def test_unusual_field_values_become_json_values() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    trace = make_trace(
        (
            EventKind.SPAWNED,
            {
                "child": OTHER,
                "kind": EventKind.SENT,
                "raw": b"\xffab",
                "pairs": [("a", "b")],
                "nested": {"k": (1, 2), 3: None},
                "object": Opaque(),
                "flags": (True, 0.5),
                "colour": Colour.RED,
            },
        )
    )

    fields = trace.to_dict()["events"][0]["fields"]

    assert fields == {
        "child": {"id": 2, "name": "worker"},
        "kind": "sent",
        "raw": "ÿab",
        "pairs": [["a", "b"]],
        "nested": {"k": [1, 2], "3": None},
        "object": "<opaque>",
        "flags": [True, 0.5],
        "colour": "red",
    }


def test_from_dict_rebuilds_an_equivalent_trace() -> None:
    trace = make_trace(
        ARRIVAL,
        (EventKind.SPAWNED, {"parent": OTHER, "pairs": [("a", "b")], "note": b"x"}, OTHER),
        START,
        PART,
        GONE,
        end=(EventKind.COMPLETED, {"status": 200}),
        scope={"type": "http", "method": "POST", "path": "/items", "query_string": b"q=1"},
    )
    data = trace.to_dict()

    again = Trace.from_dict(json.loads(json.dumps(data)))

    assert again.to_dict() == data
    assert (again.outcome, again.status, again.task) == ("disconnected", 200, TASK)
    assert again.of_kind("spawned")[0].get("parent") == OTHER
    assert again.of_kind("spawned")[0].get("pairs") == (("a", "b"),)


async def test_real_request_trace_survives_a_json_round_trip() -> None:
    app = FastAPI()

    @app.get("/wait")
    async def wait_endpoint() -> dict[str, str]:
        await asyncio.sleep(0.01)
        return {"message": "Done waiting"}

    tracer = Tracer()
    transport = httpx.ASGITransport(app=instrument(app, tracer=tracer))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/wait", headers={"authorization": "Bearer x"})
    trace = tracer.traces[0]
    data = trace.to_dict()

    again = Trace.from_dict(json.loads(json.dumps(data)))

    assert again.to_dict() == data
    assert (again.route, again.headers) == ("/wait", trace.headers)


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_other_schema_versions_are_rejected(reference: Trace, version: Any) -> None:
    data = reference.to_dict()
    data["schema_version"] = version

    with pytest.raises(ValueError, match=f"unsupported trace schema_version {version!r}"):
        Trace.from_dict(data)


def test_missing_schema_version_is_rejected(reference: Trace) -> None:
    data = reference.to_dict()
    del data["schema_version"]

    with pytest.raises(ValueError, match="schema_version None"):
        Trace.from_dict(data)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda d: d.pop("events"), id="no events"),
        pytest.param(lambda d: d.pop("path"), id="no path"),
        pytest.param(lambda d: d["events"][0].pop("task"), id="event without task"),
        pytest.param(lambda d: d.__setitem__("headers", 5), id="headers not a list"),
        pytest.param(lambda d: d["events"][0].__setitem__("kind", "exploded"), id="unknown kind"),
    ],
)
def test_damaged_dictionaries_are_a_value_error(reference: Trace, damage: Any) -> None:
    data = reference.to_dict()
    damage(data)

    with pytest.raises(ValueError, match=r"not a trace dictionary|not a valid EventKind"):
        Trace.from_dict(data)


def test_dictionary_without_a_terminal_event_is_a_value_error(reference: Trace) -> None:
    data = reference.to_dict()
    data["events"] = []

    with pytest.raises(ValueError, match="event"):
        Trace.from_dict(data)


# --- Rendering (the views themselves are tested with the views) ---------------------------------


def test_rich_renders_a_trace_and_print_trace_prints_it(reference: Trace) -> None:
    printed = Console(file=io.StringIO(), width=100, color_system=None, legacy_windows=False)
    rich = Console(file=io.StringIO(), width=100, color_system=None, legacy_windows=False)

    print_trace(reference, printed)
    rich.print(reference)

    output = printed.file.getvalue()  # type: ignore[attr-defined]
    assert "/wait" in output
    assert output == rich.file.getvalue()  # type: ignore[attr-defined]


def test_raw_event_table_lists_every_event_with_its_details() -> None:
    trace = make_trace(ARRIVAL, SLEEP, START, BODY)
    console = Console(file=io.StringIO(), width=120, color_system=None, legacy_windows=False)

    console.print(render_events(trace))

    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[0].startswith("Events · ")
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [row[:4] for row in rows] == [
        ["1", "1.500", "Task-1", "received"],
        ["2", "3.000", "Task-1", "awaiting"],
        ["3", "4.500", "Task-1", "sent"],
        ["4", "6.000", "Task-1", "sent"],
        ["5", "7.500", "Task-1", "completed"],
    ]


def event(kind: EventKind, **fields: Any) -> Event:
    return Event(1, 0, kind, TASK, fields)


@pytest.mark.parametrize(
    ("kind", "fields", "text"),
    [
        (EventKind.RECEIVED, {"type": "http", "path": "/a", "method": "get"}, "GET /a"),
        (
            EventKind.RECEIVED,
            {"type": "http", "path": "/a", "method": "POST", "http_version": "2"},
            "POST /a HTTP/2",
        ),
        (EventKind.RECEIVED, {"type": "websocket", "path": "/ws"}, "WEBSOCKET /ws"),
        (
            EventKind.RECEIVED,
            {"type": "http.request", "body_bytes": 12, "more_body": True},
            "http.request, 12 B, more to come",
        ),
        (
            EventKind.SENT,
            {"type": "http.response.start", "status": 404},
            "http.response.start, 404",
        ),
        (
            EventKind.SENT,
            {"type": "http.response.body", "body_bytes": 2048, "more_body": False},
            "http.response.body, 2.0 KiB",
        ),
        (EventKind.SENT, {"type": "websocket.send", "text_chars": 5}, "websocket.send, 5 chars"),
        (EventKind.SENT, {"type": "websocket.close", "code": 1001}, "websocket.close, code 1001"),
        (EventKind.DISCONNECTED, {"type": "http.disconnect"}, "http.disconnect"),
        (EventKind.AWAITING, {"target": "asyncio.sleep(1)"}, "asyncio.sleep(1)"),
        (
            EventKind.AWAITING,
            {"target": "asyncio.sleep(1)", "function": "wait_endpoint", "line": 7},
            "asyncio.sleep(1) at wait_endpoint line 7",
        ),
        (
            EventKind.RESUMED,
            {"waited_ns": 20 * MS, "lag_ns": 45_000},
            "waited 20.0 ms, lag 45 µs",
        ),
        (
            EventKind.BLOCKED,
            {"duration_ns": 1_001 * MS, "line": 9, "code": "time.sleep(1)"},
            "1.001 s at line 9: time.sleep(1)",
        ),
        (EventKind.FAILED, {"exception": "KeyError", "status": 500}, "KeyError after 500"),
        (EventKind.FAILED, {"exception": "KeyError", "status": None}, "KeyError"),
        (EventKind.COMPLETED, {"status": 200}, "status 200"),
        (EventKind.CANCELLED, {"status": None}, ""),
        (
            EventKind.SPAWNED,
            {"name": "worker", "file": "/app.py", "stack": "..."},
            "name=worker",
        ),
    ],
)
def test_describe_event_summarises_the_fields(
    kind: EventKind, fields: dict[str, Any], text: str
) -> None:
    assert describe_event(event(kind, **fields)) == text


def test_execution_table_says_how_many_events_were_dropped() -> None:
    trace = make_trace(ARRIVAL, START, BODY, limit=1)
    console = Console(file=io.StringIO(), width=120, color_system=None, legacy_windows=False)

    console.print(ExecutionTable(trace))

    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert "2 event(s) dropped (max_events)" in output


def test_timeline_of_no_traces_says_so() -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None, legacy_windows=False)

    console.print(Timeline([]))

    assert console.file.getvalue() == "Timeline\n(no traces)\n"  # type: ignore[attr-defined]
