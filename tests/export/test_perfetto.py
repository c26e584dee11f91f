"""Perfetto / Chrome trace-event export (`asgitrace.exporters.to_perfetto`)."""

from __future__ import annotations

import asyncio
import json
import stat
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from asgitrace import Trace, TraceMiddleware, Tracer
from asgitrace.exporters import to_perfetto, write_perfetto

REQUIRED = {
    "M": {"name", "pid", "tid", "args"},
    "X": {"name", "cat", "ts", "dur", "pid", "tid", "args"},
    "i": {"name", "cat", "ts", "pid", "tid", "s"},
    "s": {"name", "cat", "id", "ts", "pid", "tid"},
    "f": {"name", "cat", "id", "ts", "pid", "tid", "bp"},
}


def ns(us: float) -> int:
    """Microseconds back to integer nanoseconds (the export keeps ns precision)."""
    return round(us * 1000)


def check_chrome_trace(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Assert that *data* is a well-formed trace-event JSON object; return its events."""
    assert json.loads(json.dumps(data)) == data
    assert data["displayTimeUnit"] == "ms"
    events: list[dict[str, Any]] = data["traceEvents"]
    named_processes = set()
    named_threads = set()
    seen_other = False
    previous_ts = 0.0
    slices: dict[tuple[int, int], list[tuple[int, int, str]]] = defaultdict(list)
    flows: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for event in events:
        phase = event["ph"]
        assert phase in REQUIRED, event
        missing = REQUIRED[phase] - set(event)
        assert not missing, (missing, event)
        assert isinstance(event["pid"], int)
        assert isinstance(event["tid"], int)
        if phase == "M":
            assert not seen_other, "metadata comes first"
            if event["name"] == "process_name":
                named_processes.add(event["pid"])
            elif event["name"] == "thread_name":
                named_threads.add((event["pid"], event["tid"]))
            continue
        seen_other = True
        assert event["ts"] >= 0
        assert event["ts"] >= previous_ts, "sorted by time"
        previous_ts = event["ts"]
        track = (event["pid"], event["tid"])
        assert event["pid"] in named_processes
        assert track in named_threads
        if phase == "X":
            assert event["dur"] >= 0
            start = ns(event["ts"])
            slices[track].append((start, start + ns(event["dur"]), event["name"]))
        elif phase == "i":
            assert event["s"] == "t"
        else:
            assert phase not in flows[event["id"]], "one start and one finish per flow id"
            flows[event["id"]][phase] = event
            if phase == "f":
                assert event["bp"] == "e"
    for track, pieces in slices.items():
        stack: list[tuple[int, int, str]] = []
        for piece in sorted(pieces, key=lambda p: (p[0], -p[1])):
            while stack and stack[-1][1] <= piece[0]:
                stack.pop()
            if stack:
                assert piece[1] <= stack[-1][1], f"partial overlap on {track}: {stack[-1]} {piece}"
            stack.append(piece)
    for flow_id, ends in flows.items():
        assert set(ends) == {"s", "f"}, f"flow {flow_id} is not paired"
        assert ends["s"]["ts"] <= ends["f"]["ts"]
        assert ends["s"]["name"] == ends["f"]["name"]
        assert ends["s"]["cat"] == ends["f"]["cat"]
    return events


def of_phase(events: list[dict[str, Any]], phase: str, **match: Any) -> list[dict[str, Any]]:
    return [e for e in events if e["ph"] == phase and all(e.get(k) == v for k, v in match.items())]


async def traces_of(make_app: Any, *paths: str, concurrent: bool = False) -> list[Trace]:
    app = make_app()
    tracer = Tracer(blocking_threshold=make_app.blocking_threshold)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        if concurrent:
            await asyncio.gather(*(client.get(p) for p in paths))
        else:
            for path in paths:
                await client.get(path)
    return sorted(tracer.traces, key=lambda t: t.start_ns)


async def test_a_30_ms_sleep_is_a_30000_us_wait_slice(make_app: Any) -> None:
    [trace] = await traces_of(make_app, "/wait")
    events = check_chrome_trace(to_perfetto(trace))
    [wait] = of_phase(events, "X", cat="wait")
    assert wait["name"] == "await asyncio.sleep(DELAY)"
    [resumed] = trace.of_kind("resumed")
    assert ns(wait["dur"]) == resumed.get("waited_ns")
    assert make_app.delay * 1e6 - 2000 <= wait["dur"] < make_app.delay * 1e6 + 500_000
    assert wait["args"]["code"] == "await asyncio.sleep(DELAY)"
    assert wait["args"]["waited_ns"] == resumed.get("waited_ns")
    [request] = of_phase(events, "X", cat="request")
    assert request["name"] == "GET /wait (200)"
    assert request["ts"] == 0
    assert ns(request["dur"]) == trace.duration_ns
    steps = of_phase(events, "X", cat="step")
    assert len(steps) == 2
    assert steps[0]["ts"] + steps[0]["dur"] == pytest.approx(wait["ts"])
    assert wait["ts"] + wait["dur"] == pytest.approx(steps[1]["ts"])
    [process] = of_phase(events, "M", name="process_name")
    assert process["args"] == {"name": "GET /wait (200)"}
    [thread] = of_phase(events, "M", name="thread_name")
    assert thread["args"]["name"] == f"{trace.task.name} (request)"
    instants = [e["name"] for e in of_phase(events, "i")]
    assert instants[0].startswith("received: GET /wait")
    assert "sent: http.response.start, 200" in instants
    assert instants[-1] == "completed: status 200"


async def test_instants_are_named_as_the_event_table_describes_them(make_app: Any) -> None:
    """Issue 17: the Perfetto instants and the event table described events with two
    functions that disagreed; they now share `asgitrace.views.describe_event`."""
    from asgitrace.views import describe_event

    [trace] = await traces_of(make_app, "/wait")
    instants = [e["name"] for e in of_phase(check_chrome_trace(to_perfetto(trace)), "i")]
    kinds = {"received", "sent", "entered", "returned", "completed"}
    expected = [
        f"{e.kind.value}: {describe_event(e)}" if describe_event(e) else e.kind.value
        for e in trace.events
        if e.kind.value in kinds
    ]
    assert instants == expected
    assert any(name.startswith("entered: ") for name in instants)


async def test_a_blocking_step_is_a_slice_inside_its_running_step(make_app: Any) -> None:
    [trace] = await traces_of(make_app, "/block")
    events = check_chrome_trace(to_perfetto([trace]))
    # The longest blocked step is the sleep (a loaded machine may add short ones). Its line
    # comes from one stack sample; on a loaded machine that sample may miss the sleep, so
    # the slice is named after whatever line the trace recorded.
    event = max(trace.blocking(), key=lambda e: e.get("duration_ns"))
    [blocked] = [
        e for e in of_phase(events, "X", cat="blocked") if ns(e["dur"]) == event.get("duration_ns")
    ]
    what = event.get("code") or event.get("function") or "a step"
    assert blocked["name"] == f"blocked: {what}"
    assert blocked["dur"] >= make_app.slow * 1e6
    assert blocked["args"].get("line") == event.get("line")
    enclosing = [
        s
        for s in of_phase(events, "X", cat="step")
        if s["ts"] <= blocked["ts"] and blocked["ts"] + blocked["dur"] <= s["ts"] + s["dur"]
    ]
    assert len(enclosing) == 1


async def test_child_tasks_get_their_own_tracks_and_flow_arrows(make_app: Any) -> None:
    [trace] = await traces_of(make_app, "/gather")
    events = check_chrome_trace(to_perfetto([trace]))
    request_tid = trace.task.id
    children = {e.task.id for e in trace.of_kind("spawned")}
    assert len(children) == 2
    threads = {e["tid"]: e["args"]["name"] for e in of_phase(events, "M", name="thread_name")}
    assert set(threads) == {request_tid, *children}
    starts = of_phase(events, "s")
    finishes = of_phase(events, "f")
    assert {e["tid"] for e in starts} == {request_tid}
    assert {e["tid"] for e in finishes} == children
    # Each arrow starts inside the parent's wait on gather and ends at the child's first step.
    [gather_wait] = of_phase(events, "X", cat="wait", tid=request_tid)
    assert gather_wait["name"].startswith("await asyncio.gather(")
    for start in starts:
        assert gather_wait["ts"] <= start["ts"] <= gather_wait["ts"] + gather_wait["dur"]
    for finish in finishes:
        first = min(e["ts"] for e in of_phase(events, "X", tid=finish["tid"]))
        assert finish["ts"] == first
    child_waits = [e for e in of_phase(events, "X", cat="wait") if e["tid"] in children]
    assert {e["name"] for e in child_waits} == {"await asyncio.sleep(0.001 * n)"}


async def test_concurrent_requests_are_processes_on_one_time_axis(make_app: Any) -> None:
    traces = await traces_of(make_app, "/wait", "/wait", "/block", concurrent=True)
    events = check_chrome_trace(to_perfetto(traces))
    names = {e["pid"]: e["args"]["name"] for e in of_phase(events, "M", name="process_name")}
    assert sorted(names.values()) == ["GET /block (200)", "GET /wait (200)", "GET /wait (200)"]
    requests = {e["pid"]: e for e in of_phase(events, "X", cat="request")}
    assert min(r["ts"] for r in requests.values()) == 0
    first, second = (requests[pid] for pid in sorted(requests)[:2])
    # One process, one monotonic clock: offsets are exact, not blurred by the wall clock.
    assert ns(second["ts"]) - ns(first["ts"]) == traces[1].start_ns - traces[0].start_ns


async def test_failed_and_server_error_requests_are_labelled(make_app: Any) -> None:
    traces = await traces_of(make_app, "/boom", "/crash")
    events = check_chrome_trace(to_perfetto(traces))
    names = [e["args"]["name"] for e in of_phase(events, "M", name="process_name")]
    # The crash reaches asgitrace before Starlette's error middleware answers 500.
    assert names == ["GET /boom (500)", "GET /crash (failed)"]
    assert any(e["name"] == "failed: RuntimeError" for e in of_phase(events, "i"))


def build(
    events: list[tuple[int, str, int, dict[str, Any]]],
    *,
    trace_id: str = "t",
    start: float = 1_700_000_000.0,
    start_ns: int = 0,
    end_ns: int | None = None,
    status: int | None = 200,
    type: str = "http",
    method: str | None = "GET",
) -> Trace:
    """A trace from (t_ns, kind, task id, fields) tuples."""
    return Trace.from_dict(
        {
            "schema_version": 1,
            "id": trace_id,
            "type": type,
            "method": method,
            "path": "/x",
            "route": None,
            "query": "",
            "headers": [],
            "response_headers": [],
            "status": status,
            "start": start,
            "start_ns": start_ns,
            "end_ns": end_ns if end_ns is not None else events[-1][0],
            "dropped": 0,
            "events": [
                {
                    "seq": seq,
                    "t_ns": t,
                    "kind": kind,
                    "task": {"id": task, "name": f"Task-{task}"},
                    "fields": fields,
                }
                for seq, (t, kind, task, fields) in enumerate(events, 1)
            ],
        }
    )


def test_traces_from_other_machines_are_placed_by_wall_clock() -> None:
    first = build([(10, "received", 1, {}), (1000, "completed", 1, {})], trace_id="a")
    # Another machine: an unrelated monotonic clock, arriving 0.5 s later.
    second = build(
        [(7_000_010, "received", 1, {}), (7_001_000, "completed", 1, {})],
        trace_id="b",
        start=1_700_000_000.5,
        start_ns=7_000_000,
    )
    events = check_chrome_trace(to_perfetto([second, first]))
    requests = of_phase(events, "X", cat="request")
    assert [(r["pid"], r["ts"]) for r in requests] == [(1, 0.0), (2, 500_000.0)]


def test_traces_on_one_clock_ignore_wall_clock_jitter() -> None:
    first = build([(10, "received", 1, {}), (1000, "completed", 1, {})], trace_id="a")
    # 1 ms later on the monotonic clock, but the wall clock said 1.4 ms.
    second = build(
        [(1_000_010, "received", 1, {}), (1_001_000, "completed", 1, {})],
        trace_id="b",
        start=1_700_000_000.0014,
        start_ns=1_000_000,
    )
    requests = of_phase(to_perfetto([first, second])["traceEvents"], "X", cat="request")
    assert [r["ts"] for r in requests] == [0.0, 1000.0]


def test_a_step_timed_before_its_resume_event_still_nests() -> None:
    """The loop's step clock starts just before `resumed` is recorded."""
    trace = build(
        [
            (0, "received", 1, {}),
            (100, "awaiting", 1, {"target": "thing()"}),
            (100, "yielded", 1, {}),
            (2000, "resumed", 1, {"waited_ns": 1900}),
            (9000, "blocked", 1, {"started_ns": 1990, "duration_ns": 7000, "code": "work()"}),
            (9100, "completed", 1, {"status": 200}),
        ]
    )
    events = check_chrome_trace(to_perfetto(trace))
    [wait] = of_phase(events, "X", cat="wait")
    [blocked] = of_phase(events, "X", cat="blocked")
    steps = of_phase(events, "X", cat="step")
    assert blocked["name"] == "blocked: work()"
    assert (ns(wait["ts"]), ns(wait["ts"] + wait["dur"])) == (100, 1990)
    assert [(ns(s["ts"]), ns(s["ts"] + s["dur"])) for s in steps] == [(0, 100), (1990, 9100)]


def test_unfinished_and_inconsistent_traces_still_give_valid_tracks() -> None:
    trace = build(
        [
            (0, "received", 1, {}),
            (10, "awaiting", 1, {"target": "x()"}),
            (10, "yielded", 1, {}),
            (20, "spawned", 2, {"parent": {"id": 1, "name": "Task-1"}, "coro": "child"}),
            (30, "yielded", 2, {}),
            (40, "resumed", 3, {}),  # a task whose first events were dropped
            (50, "blocked", 3, {"started_ns": 45, "duration_ns": 1_000, "function": "f"}),
            (60, "spawned", 4, {"parent": "not a task ref", "coro": "orphan"}),
            (70, "blocked", 1, {"duration_ns": 5}),
            (100, "completed", 1, {}),
        ],
        status=None,
    )
    events = check_chrome_trace(to_perfetto(trace))
    waits = {(e["tid"], e["name"]): e for e in of_phase(events, "X", cat="wait")}
    assert waits[(1, "await x()")]["args"]["unfinished"] is True
    assert waits[(2, "waiting")]["args"]["unfinished"] is True
    [clipped] = [e for e in of_phase(events, "X", cat="blocked") if e["tid"] == 3]
    assert clipped["name"] == "blocked: f"
    assert clipped["args"]["clipped"] is True
    assert len(of_phase(events, "s")) == 1  # the orphan has no parent to draw from
    [process] = of_phase(events, "M", name="process_name")
    assert process["args"]["name"] == "GET /x"


@pytest.mark.parametrize(
    ("end", "status", "label"),
    [
        (("cancelled", {}), None, "GET /x (cancelled)"),
        (("failed", {"exception": "KeyError"}), 500, "GET /x (500, failed)"),
        (("completed", {}), 101, "WEBSOCKET /x (101)"),
    ],
)
def test_process_names_say_how_the_request_ended(
    end: tuple[str, dict[str, Any]], status: int | None, label: str
) -> None:
    websocket = status == 101
    trace = build(
        [(0, "received", 1, {}), (5, end[0], 1, end[1])],
        status=status,
        type="websocket" if websocket else "http",
        method=None if websocket else "GET",
    )
    [process] = of_phase(to_perfetto(trace)["traceEvents"], "M", name="process_name")
    assert process["args"]["name"] == label


def test_nothing_to_export_gives_an_empty_trace() -> None:
    data = to_perfetto([])
    assert data["traceEvents"] == []
    assert data["displayTimeUnit"] == "ms"


async def test_write_perfetto_writes_a_private_json_file(tmp_path: Path, make_app: Any) -> None:
    traces = await traces_of(make_app, "/gather", "/wait")
    path = tmp_path / "trace.json"
    write_perfetto(traces, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    check_chrome_trace(json.loads(path.read_text()))
    assert json.loads(path.read_text()) == to_perfetto(traces)
