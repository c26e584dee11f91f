"""The views: execution table, variable tracker, timeline, key moments, explain page."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import time
from textwrap import dedent
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.responses import StreamingResponse
from rich.console import Console

from asgitrace import (
    THEME,
    ExecutionTable,
    KeyMoments,
    Timeline,
    Trace,
    TraceMiddleware,
    Tracer,
    VariableTracker,
    explain,
    print_trace,
)
from asgitrace.cli._server import running_server
from asgitrace.views import execution_steps, key_moments, timeline_lanes, variable_tracker

DELAY = 0.03


def _event(seq: int, t_us: int, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "t_ns": 1_000_000_000 + t_us * 1000,
        "kind": kind,
        "task": {"id": 1, "name": "Task-1"},
        "fields": fields,
    }


def reference_trace() -> Trace:
    """The tutorial's request as a fixed trace, so the golden text is exact."""
    return Trace.from_dict(
        {
            "schema_version": 1,
            "id": "0123456789abcdef",
            "type": "http",
            "method": "GET",
            "path": "/wait",
            "route": "/wait",
            "query": "",
            "headers": [],
            "response_headers": [["content-type", "application/json"]],
            "status": 200,
            "start": 1_700_000_000.0,
            "start_ns": 1_000_000_000,
            "end_ns": 1_000_000_000 + 1_002_000_000,
            "dropped": 0,
            "events": [
                _event(1, 0, "received", type="http", path="/wait", method="GET"),
                _event(2, 700, "entered", function="wait_endpoint", file="app.py", line=7),
                _event(
                    3,
                    800,
                    "awaiting",
                    function="wait_endpoint",
                    file="app.py",
                    line=8,
                    code="await asyncio.sleep(1)",
                    target="asyncio.sleep(1)",
                    cooperative=False,
                ),
                _event(4, 800, "yielded", ready=0),
                _event(5, 1_001_200, "resumed", waited_ns=1_000_400_000, lag_ns=200_000),
                _event(6, 1_001_300, "returned", value="{'message': 'Done waiting'}"),
                _event(
                    7,
                    1_001_500,
                    "sent",
                    type="http.response.start",
                    status=200,
                    content_type="application/json",
                ),
                _event(
                    8, 1_001_600, "sent", type="http.response.body", body_bytes=27, more_body=False
                ),
                _event(9, 1_002_000, "completed", status=200),
            ],
        }
    )


def render(renderable: Any, width: int = 140, **options: Any) -> str:
    console = Console(
        file=io.StringIO(),
        width=width,
        color_system=None,
        legacy_windows=False,
        record=True,
        theme=THEME,
        **options,
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def test_reference_execution_table_golden() -> None:
    expected = dedent(
        """\
        Execution table · GET /wait → 200 in 1.002 s · completed
        Step    At ms      Took   Action                       State Before         Awaited?   State After          Output
        ─────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────────
           1      0.0             Request received by ASGI     No active task for   No         Start async          None
                                  server (GET /wait)           this request                    endpoint
           2      0.7             Enter async function         Function start       No         Hit await            None
                                  wait_endpoint                                                asyncio.sleep(1)
           3      0.8             Await asyncio.sleep(1)       wait_endpoint        Yes        Yield control to     None
                                                               paused at app.py:8              event loop
           4      0.8   1.000 s   Event loop idle              Sleep ongoing        Yes        Sleep completes      None
                                                                                               after 1.000 s
           5   1001.2             Resume wait_endpoint after   Sleep done           No         Return response      {'message': 'Done
                                  await (waited 1.000 s, lag                                   dict                 waiting'}
                                  200 µs)
           6   1001.5             ASGI server sends response   Response ready       No         Response sent to     HTTP 200 with
                                  (200, 27 B)                                                  client               JSON"""
    )
    assert render(ExecutionTable(reference_trace()), width=125) == expected


def test_reference_variable_tracker_golden() -> None:
    expected = dedent(
        """\
        Variable tracker
        Variable                 Start         After Step 2   After Step 3        After Step 5          Final
        ───────────────────────────────────────────────────────────────────────────────────────────────────────────────────
        async function state     Not started   Running        Paused (awaiting)   Resumed               Completed
        await asyncio.sleep(1)   Not called    Called         Sleeping            Done                  N/A
        response                 None          None           None                {'message': 'Done     {'message': 'Done
                                                                                  waiting'}             waiting'}"""
    )
    assert render(VariableTracker(reference_trace()), width=115) == expected


def test_reference_steps_match_the_tutorial() -> None:
    steps = execution_steps(reference_trace())
    assert [(s.number, s.action, s.awaited) for s in steps] == [
        (1, "Request received by ASGI server (GET /wait)", False),
        (2, "Enter async function wait_endpoint", False),
        (3, "Await asyncio.sleep(1)", True),
        (4, "Event loop idle", True),
        (5, "Resume wait_endpoint after await (waited 1.000 s, lag 200 µs)", False),
        (6, "ASGI server sends response (200, 27 B)", False),
    ]
    assert steps[4].output == "{'message': 'Done waiting'}"
    assert steps[5].output == "HTTP 200 with JSON"
    assert [s.kind for s in steps] == ["received", "entered", "await", "loop", "resumed", "sent"]


def test_tables_fit_80_columns_and_never_crash_narrow() -> None:
    trace = reference_trace()
    text = render(ExecutionTable(trace), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "State Before →" in text
    assert "asyncio.sleep(1)" in text
    for width in (10, 20, 40):
        assert render(ExecutionTable(trace), width=width)
        assert render(VariableTracker(trace), width=width)
        assert render(Timeline([trace]), width=width)


def test_ascii_mode_uses_no_box_drawing() -> None:
    text = render(ExecutionTable(reference_trace(), ascii=True), width=80)
    text += render(Timeline([reference_trace()], ascii=True), width=80)
    assert all(ord(ch) < 128 for ch in text.replace("µ", "u").replace("→", "").replace("·", ""))
    assert "-+-" in text or "|" in text


def test_no_colour_when_not_a_terminal_or_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.StringIO()
    print_trace(reference_trace(), Console(file=buffer, width=120, theme=THEME))
    assert "\x1b[" not in buffer.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    buffer = io.StringIO()
    print_trace(reference_trace(), Console(file=buffer, width=120, force_terminal=True))
    assert "\x1b[3" not in buffer.getvalue()  # no foreground colours
    monkeypatch.delenv("NO_COLOR")
    buffer = io.StringIO()
    trace = reference_trace()
    blocked = Trace.from_dict(
        {
            **trace.to_dict(),
            "events": [
                *trace.to_dict()["events"][:2],
                _event(
                    3,
                    900,
                    "blocked",
                    duration_ns=500_000_000,
                    code="time.sleep(1)",
                    file="app.py",
                    line=9,
                    started_ns=1_000_000_500,
                    stack=[],
                ),
                *trace.to_dict()["events"][6:],
            ],
        }
    )
    print_trace(blocked, Console(file=buffer, width=120, force_terminal=True))
    assert "\x1b[1;31m" in buffer.getvalue()  # the blocked row is bold red by default


def test_key_moments_of_the_reference() -> None:
    moments = key_moments(reference_trace())
    assert moments[0] == "Waited 1.000 s on asyncio.sleep(1) (app.py:8)."
    assert moments[-1].startswith("Running 0 % of 1.002 s")
    assert "Key moments" in render(KeyMoments(reference_trace()))


def test_explain_is_written_from_the_trace() -> None:
    page = explain(reference_trace())
    assert page.startswith("# What happened during GET /wait\n")
    assert "| 3 | 800 µs | Await asyncio.sleep(1) |" in page
    assert "| await asyncio.sleep(1) | Not called | Called | Sleeping | Done | N/A |" in page
    assert "- Waited 1.000 s on asyncio.sleep(1) (app.py:8)." in page


# -- from real runs ---------------------------------------------------------------------


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/wait")
    async def wait_endpoint() -> dict[str, str]:
        await asyncio.sleep(DELAY)
        return {"message": "Done waiting"}

    @app.get("/block")
    async def block_endpoint() -> dict[str, str]:
        time.sleep(0.08)
        return {"message": "Done waiting"}

    @app.get("/boom")
    async def boom() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    async def child(n: int) -> int:
        await asyncio.sleep(0.001)
        return n

    @app.get("/child")
    async def with_child() -> int:
        return await asyncio.create_task(child(3))

    @app.get("/watch")
    async def watched() -> dict[str, int]:
        total = 0
        for item in range(3):
            total += item
            await asyncio.sleep(0.001)
        return {"total": total}

    return app


async def run(app: FastAPI, *paths: str, **options: Any) -> list[Trace]:
    tracer = Tracer(blocking_threshold=0.04, **options)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in paths:
            await client.get(path)
    return tracer.traces


async def test_real_reference_example_has_the_six_steps_and_three_rows() -> None:
    [trace] = await run(make_app(), "/wait")
    steps = execution_steps(trace)
    assert [s.kind for s in steps] == ["received", "entered", "await", "loop", "resumed", "sent"]
    assert steps[2].action == "Await asyncio.sleep(DELAY)"
    tracker = variable_tracker(trace)
    rows = dict(tracker.rows)
    assert list(rows) == ["async function state", "await asyncio.sleep(DELAY)", "response"]
    assert rows["async function state"][0] == "Not started"
    assert rows["async function state"][-1] == "Completed"
    assert "Paused (awaiting)" in rows["async function state"]
    assert rows["await asyncio.sleep(DELAY)"][:4] == ("Not called", "Called", "Sleeping", "Done")
    assert tracker.columns == ("Start", "After Step 2", "After Step 3", "After Step 5", "Final")
    assert rows["response"][-1] == "{'message': 'Done waiting'}"


async def test_real_blocking_variant_marks_the_block() -> None:
    [trace] = await run(make_app(), "/block")
    steps = execution_steps(trace)
    [blocked] = [s for s in steps if s.mark == "blocked"]
    assert blocked.action.startswith("Block the event loop for ")
    assert "time.sleep(0.08) (tests/views/test_render.py:" in blocked.action
    assert [s.kind for s in steps].index("blocked") < [s.kind for s in steps].index("sent")
    text = render(ExecutionTable(trace), width=120)
    assert "⚠ Block the event" in text
    assert key_moments(trace)[0].startswith("Blocked the event loop for ")


async def test_real_exception_and_child_task_rows() -> None:
    boom, child = await run(make_app(), "/boom", "/child")
    assert execution_steps(boom)[-1].action == "Endpoint raised ValueError"
    assert variable_tracker(boom).rows[0][1][-1] == "Failed"
    actions = [s.action for s in execution_steps(child)]
    assert any(
        re.fullmatch(r"\[Task-\d+\] Start child task child\(\) \(from .+\)", a) for a in actions
    )
    assert any(re.fullmatch(r"\[Task-\d+\] Child task completed", a) for a in actions)


async def test_watched_variables_get_their_own_rows() -> None:
    [trace] = await run(make_app(), "/watch", watch=("item", "total"))
    # Every step where something changed, with detail="all" (the default keeps a few).
    # (How many columns repeat a value depends on the Python: 3.12+ records `returned`.)
    rows = dict(variable_tracker(trace, detail="all").rows)
    assert _changes(rows["item"]) == ["—", "0", "1", "2"]
    assert _changes(rows["total"]) == ["—", "0", "1", "3"]
    assert rows["item"][:2] == ("—", "—")
    # The default keeps Start, the steps worth seeing (which waits were longest depends on
    # the real clock here) and Final.
    bounded = dict(variable_tracker(trace).rows)
    assert len(bounded["item"]) == 5
    assert (bounded["item"][0], bounded["item"][-1]) == ("—", "2")
    assert (bounded["total"][0], bounded["total"][-1]) == ("—", "3")


def _changes(row: tuple[str, ...]) -> list[str]:
    """The values of a tracker row, each run of repeats kept once."""
    return [value for i, value in enumerate(row) if i == 0 or row[i - 1] != value]


def _lane_text(traces: list[Trace]) -> list[str]:
    return render(Timeline(traces), width=100).splitlines()[1:3]


@pytest.mark.parametrize(("path", "overlap"), [("/wait", True), ("/block", False)])
def test_timeline_shows_overlap_or_serialisation(path: str, overlap: bool) -> None:
    app = make_app()
    tracer = Tracer(blocking_threshold=0.04)
    app.add_middleware(TraceMiddleware, tracer=tracer)

    async def main() -> None:
        async with running_server(app) as url, httpx.AsyncClient(base_url=url) as client:
            await asyncio.gather(client.get(path), client.get(path))

    asyncio.run(main())
    lanes = timeline_lanes(tracer.traces)
    first, second = lanes
    assert (second.start_ns < first.end_ns) is overlap
    lines = _lane_text(tracer.traces)
    if overlap:
        columns = [{i for i, ch in enumerate(line) if ch == "─"} for line in lines]
        assert columns[0] & columns[1]  # both awaiting at the same time
    else:
        assert all("▓" in line for line in lines)
        blocked = [{i for i, ch in enumerate(line) if ch == "▓"} for line in lines]
        assert max(blocked[0]) <= min(blocked[1])
    legend = render(Timeline(tracer.traces), width=100)
    assert "█ running" in legend
    assert "▓ blocked the loop" in legend


# -- more shapes of requests ------------------------------------------------------------


def shapes_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        return {"size": len(body)}

    async def chunks() -> Any:
        for _ in range(3):
            yield b"x" * 10
            await asyncio.sleep(0.001)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks())

    @app.get("/sync")
    def sync_endpoint() -> dict[str, bool]:
        time.sleep(0.002)
        return {"ok": True}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text * 2)
        await websocket.close(code=1000)

    return app


async def test_body_stream_and_thread_rows_read_as_sentences() -> None:
    app = shapes_app()
    tracer = Tracer()
    app.add_middleware(TraceMiddleware, tracer=tracer)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/echo", content=b"a" * 2_000_000)).json() == {"size": 2_000_000}
        await client.get("/stream")
        await client.get("/sync")
    echo, stream, sync = tracer.traces
    actions = [s.action for s in execution_steps(echo)]
    assert "Receive http.request (1.9 MiB)" in actions
    stream_actions = [s.action for s in execution_steps(stream)]
    assert any(a.startswith("ASGI server sends response (200") for a in stream_actions)
    every_row = [s.action for s in execution_steps(stream, detail="all")]
    assert any(a.startswith("Send response body (10 B, more to come)") for a in every_row)
    if len(every_row) > 15:  # folded by default: the chunks between first and last send
        assert any(a.startswith("Stream the response body: sent ") for a in stream_actions)
    sync_steps = execution_steps(sync)
    thread_rows = [s for s in sync_steps if s.kind == "thread"]
    assert thread_rows[0].action == "Run sync_endpoint in a worker thread"
    assert {s.mark for s in thread_rows} == {"thread"}
    assert not any(s.kind == "yield" for s in sync_steps)  # anyio's checkpoints are hidden
    assert any(
        s.action.startswith("Worker thread runs sync_endpoint; event loop") for s in sync_steps
    )
    assert any(m.endswith("in the thread pool.") for m in key_moments(sync))
    if sys.version_info >= (3, 12):  # the entry in the worker thread is observed
        assert variable_tracker(sync).rows[0][0] == "function state"


def test_websocket_rows() -> None:
    app = shapes_app()
    tracer = Tracer()
    app.add_middleware(TraceMiddleware, tracer=tracer)

    async def main() -> None:
        import websockets

        async with (
            running_server(app) as url,
            websockets.connect(url.replace("http", "ws") + "/ws") as socket,
        ):
            await socket.send("hi")
            assert await socket.recv() == "hihi"

    asyncio.run(main())
    actions = [s.action for s in execution_steps(tracer.traces[0])]
    assert "Accept the WebSocket" in actions
    assert "Send 1 WebSocket message (4 B/chars)" in actions
    assert "Close the WebSocket (code 1000)" in actions
    assert "Receive websocket.receive (2 chars)" in actions


def test_lag_disconnect_and_cancel_rows_from_a_fixed_trace() -> None:
    trace = Trace.from_dict(
        {
            **reference_trace().to_dict(),
            "events": [
                _event(1, 0, "received", type="http", path="/wait", method="GET"),
                _event(
                    2,
                    10,
                    "awaiting",
                    function="f",
                    file="app.py",
                    line=3,
                    code="await queue.get()",
                    target="queue.get()",
                    cooperative=False,
                ),
                _event(3, 10, "yielded", ready=None),
                _event(
                    4,
                    30_000,
                    "resumed",
                    waited_ns=29_990_000,
                    lag_ns=25_000_000,
                    other_steps=4,
                    other_tasks=2,
                ),
                _event(5, 30_100, "disconnected", type="http.disconnect"),
                _event(6, 30_200, "cancelled", status=None),
            ],
        }
    )
    steps = execution_steps(trace)
    assert [s.kind for s in steps] == [
        "received",
        "await",
        "loop",
        "resumed",
        "disconnected",
        "cancelled",
    ]
    assert steps[2].action == "Event loop runs other tasks (4 steps of 2 tasks)"
    assert steps[3].before == "queue.get() done"
    assert variable_tracker(trace).rows[0][1][-1] == "Cancelled"
    moments = key_moments(trace)
    assert (
        "Loop lag 25.0 ms resuming after queue.get(): the loop was busy when the wait ended."
        in moments
    )
    lanes = timeline_lanes([trace])
    assert {state for _, _, state in lanes[0].segments} == {"running", "awaiting"}


async def test_explain_quotes_the_endpoint_source() -> None:
    [trace] = await run(make_app(), "/wait")
    page = explain(trace)
    assert "## The endpoint" in page
    assert '@app.get("/wait")\nasync def wait_endpoint() -> dict[str, str]:' in page
    assert "    await asyncio.sleep(DELAY)" in page


# -- goldens of the other shapes ---------------------------------------------------------


def _golden_traces() -> tuple[Trace, Trace]:
    """A blocking request, and one with a child task and watched variables (fixed times)."""

    def ev(seq, us, kind, task=1, name="Task-1", **f):
        return {
            "seq": seq,
            "t_ns": 1_000_000_000 + us * 1000,
            "kind": kind,
            "task": {"id": task, "name": name},
            "fields": f,
        }

    base = reference_trace().to_dict()
    blocking = Trace.from_dict(
        {
            **base,
            "path": "/block",
            "route": "/block",
            "end_ns": 1_000_000_000 + 1_002_500_000,
            "events": [
                ev(1, 0, "received", type="http", path="/block", method="GET"),
                ev(2, 600, "entered", function="block_endpoint", file="app.py", line=12),
                ev(
                    3,
                    1_001_000,
                    "returned",
                    function="block_endpoint",
                    value="{'message': 'Done waiting'}",
                ),
                ev(
                    4,
                    1_001_500,
                    "sent",
                    type="http.response.start",
                    status=200,
                    content_type="application/json",
                ),
                ev(5, 1_001_600, "sent", type="http.response.body", body_bytes=27, more_body=False),
                ev(
                    6,
                    1_002_000,
                    "blocked",
                    duration_ns=1_001_700_000,
                    started_ns=1_000_000_300,
                    file="app.py",
                    line=13,
                    function="block_endpoint",
                    code="time.sleep(1)",
                    stack=["app.py:13 in block_endpoint"],
                ),
                ev(7, 1_002_500, "completed", status=200),
            ],
        }
    )
    child = Trace.from_dict(
        {
            **base,
            "path": "/items",
            "route": "/items",
            "end_ns": 1_000_000_000 + 30_000_000,
            "events": [
                ev(1, 0, "received", type="http", path="/items", method="GET"),
                ev(2, 500, "entered", function="items", file="app.py", line=20),
                ev(
                    3,
                    600,
                    "awaiting",
                    function="items",
                    file="app.py",
                    line=22,
                    code="total = await asyncio.create_task(count(item))",
                    target="asyncio.create_task(count(item))",
                    cooperative=False,
                    watched={"item": "'book'", "total": "0"},
                ),
                ev(4, 600, "yielded", ready=1),
                ev(
                    5,
                    700,
                    "spawned",
                    task=2,
                    name="Task-2",
                    parent={"id": 1, "name": "Task-1"},
                    coro="count",
                ),
                ev(
                    6,
                    750,
                    "awaiting",
                    task=2,
                    name="Task-2",
                    function="count",
                    file="app.py",
                    line=16,
                    code="await asyncio.sleep(0.02)",
                    target="asyncio.sleep(0.02)",
                    cooperative=False,
                ),
                ev(7, 750, "yielded", task=2, name="Task-2", ready=0),
                ev(
                    8,
                    20_900,
                    "resumed",
                    task=2,
                    name="Task-2",
                    waited_ns=20_150_000,
                    lag_ns=150_000,
                    other_steps=0,
                ),
                ev(9, 21_000, "task_done", task=2, name="Task-2", outcome="completed"),
                ev(
                    10,
                    21_100,
                    "resumed",
                    waited_ns=20_500_000,
                    lag_ns=None,
                    other_steps=2,
                    other_tasks=1,
                ),
                ev(
                    11,
                    21_300,
                    "returned",
                    function="items",
                    value="{'item': 'book', 'total': 3}",
                    watched={"item": "'book'", "total": "3"},
                ),
                ev(
                    12,
                    21_500,
                    "sent",
                    type="http.response.start",
                    status=200,
                    content_type="application/json",
                ),
                ev(13, 21_600, "sent", type="http.response.body", body_bytes=28, more_body=False),
                ev(14, 30_000, "completed", status=200),
            ],
        }
    )
    return blocking, child


def test_blocking_variant_golden() -> None:
    blocking, _ = _golden_traces()
    expected = dedent(
        """\
        Execution table · GET /block → 200 in 1.002 s · completed
                        Action
        Step    At ms     State Before → After                                   Output
        ────────────────────────────────────────────────────────────────────────────────────────────────────
           1      0.0   Request received by ASGI server (GET /block)             None
                          No active task for this request → Start async
                          endpoint
           2      0.6   Enter async function block_endpoint                      None
                          Function start → Block the event loop
           3      0.6   ⚠ Block the event loop for 1.002 s: time.sleep(1)        None
                        (app.py:13)
                          Function running → Nothing else could run meanwhile
           4   1001.0   Return from block_endpoint                               {'message': 'Done waiting'}
                          Function finishing → Return response dict
           5   1001.5   ASGI server sends response (200, 27 B)                   HTTP 200 with JSON
                          Response ready → Response sent to client"""
    )
    assert render(ExecutionTable(blocking), width=100) == expected
    expected = dedent(
        """\
        Variable tracker
        Variable               Start         After Step 2   After Step 4              Final
        ────────────────────────────────────────────────────────────────────────────────────────────────────
        async function state   Not started   Running        Running                   Completed
        response               None          None           {'message': 'Done         {'message': 'Done
                                                            waiting'}                 waiting'}"""
    )
    assert render(VariableTracker(blocking), width=100) == expected


def test_child_task_and_watched_variables_golden() -> None:
    _, child = _golden_traces()
    expected = dedent(
        """\
        Execution table · GET /items → 200 in 30.0 ms · completed
                       Action
        Step   At ms     State Before → After                                    Output
        ────────────────────────────────────────────────────────────────────────────────────────────────────
           1     0.0   Request received by ASGI server (GET /items)              None
                         No active task for this request → Start async
                         endpoint
           2     0.5   Enter async function items                                None
                         Function start → Hit await asyncio.create_task(…)
           3     0.6   Await asyncio.create_task(…) [awaited]                    None
                         items paused at app.py:22 → Yield control to event
                         loop
           4     0.6   Event loop runs other tasks (2 steps of 1 task)           None
                       [awaited 20.5 ms]
                         asyncio.create_task(…) pending →
                         asyncio.create_task(…) completes after 20.5 ms
           5     0.7   [Task-2] Start child task count() (from Task-1)           None
                         Parent task running → Child task scheduled on the
                         loop
           6     0.8   [Task-2] Await asyncio.sleep(0.02) [awaited]              None
                         count paused at app.py:16 → Yield control to event
                         loop
           7    20.9   [Task-2] Resume count after await (waited 20.1 ms, lag    None
                       150 µs)
                         Sleep done → Finish the child task
           8    21.0   [Task-2] Child task completed                             None
                         Child task running → Child task finished
           9    21.1   Resume items after await (waited 20.5 ms)                 {'item': 'book', 'total':
                         asyncio.create_task(…) done → Return response dict      3}
          10    21.5   ASGI server sends response (200, 28 B)                    HTTP 200 with JSON
                         Response ready → Response sent to client"""
    )
    assert render(ExecutionTable(child), width=100) == expected
    expected = dedent(
        """\
        Variable tracker
        Variable                 Start         After Step 2   After Step 3     After Step 9    Final
        ────────────────────────────────────────────────────────────────────────────────────────────────────
        async function state     Not started   Running        Paused           Resumed         Completed
                                                              (awaiting)
        await                    Not called    Called         Pending          Done            N/A
        asyncio.create_task(…)
        response                 None          None           None             {'item':        {'item':
                                                                               'book',         'book',
                                                                               'total': 3}     'total': 3}
        item                     —             —              'book'           'book'          'book'
        total                    —             —              0                3               3"""
    )
    assert render(VariableTracker(child), width=100) == expected


def test_text_from_a_trace_cannot_style_or_control_the_terminal() -> None:
    data = reference_trace().to_dict()
    hostile = "/x\x1b[2J[bold red]boom[/]"
    data["path"] = hostile
    data["events"][0]["fields"]["path"] = hostile
    trace = Trace.from_dict(data)
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=True, color_system="truecolor")
    print_trace(trace, console)
    print_trace(trace, Console(file=buffer, width=200, color_system=None))
    out = buffer.getvalue()
    assert "\x1b[2J" not in out
    assert "\\x1b[2J[bold red]boom[/]" in out  # shown literally, markup included


# -- readable at any size (issue 19) ----------------------------------------------------


def realworld_app() -> FastAPI:
    """A realworld-shaped endpoint: a dependency chain, ~15 awaits, `gather` children."""
    app = FastAPI()

    async def query(name: str) -> str:
        await asyncio.sleep(0.002)
        return name

    async def session() -> str:
        await asyncio.sleep(0.002)
        return "session"

    async def user(s: str = Depends(session)) -> str:
        return await query("user")

    async def tag(i: int) -> int:
        await asyncio.sleep(0.002)
        return i

    @app.get("/api/articles/{slug}")
    async def get_article(slug: str, who: str = Depends(user)) -> dict[str, Any]:
        await query("article")
        for i in range(10):
            await query(f"q{i}")
        tags = await asyncio.gather(*(tag(i) for i in range(3)))
        await asyncio.sleep(0.005)
        return {"article": slug, "tags": tags}

    return app


async def test_realworld_endpoint_is_folded_and_its_tracker_bounded() -> None:
    """Issue 19: at most six value columns and about 15 rows by default; all with detail."""
    [trace] = await run(realworld_app(), "/api/articles/hello")
    steps = execution_steps(trace)
    everything = execution_steps(trace, detail="all")
    assert len(steps) <= 15 < len(everything)
    assert [s.number for s in steps] == list(range(1, len(steps) + 1))
    covered = [x for s in steps for x in (s.covers or (s,))]
    assert len(covered) > len(steps)
    assert steps[0].kind == "received"
    assert steps[-1].kind == "sent"
    assert any("\u00d7" in s.action for s in steps)  # the repeated query, counted
    tracker = variable_tracker(trace)
    assert len(tracker.columns) <= 6
    assert tracker.columns[0] == "Start"
    assert tracker.columns[-1] == "Final"
    assert len(tracker.rows) <= 5
    assert 'detail="all"' in tracker.note
    full = variable_tracker(trace, detail="all")
    assert len(full.columns) > len(tracker.columns)
    assert full.note == ""


@pytest.mark.parametrize("width", [80, 100, 120])
async def test_realworld_tracker_fits_without_cutting_a_word(width: int) -> None:
    [trace] = await run(realworld_app(), "/api/articles/hello")
    text = render(VariableTracker(trace), width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    words = set(text.split())
    shown = sum(line.count("Step") for line in text.splitlines()[1:3])
    tracker = variable_tracker(trace, max_steps=shown)
    assert len(tracker.columns) == shown + 2
    for column in (*tracker.columns, *(value for _, values in tracker.rows for value in values)):
        for word in column.split():
            assert word in words, (word, text)


def test_reference_tracker_at_80_columns_keeps_every_word() -> None:
    """Issue 19: the README demo cut "Final" to "Fin" and left "(awaiting" without ")"."""
    text = render(VariableTracker(reference_trace()), width=80)
    assert "Final" in text.split()
    assert "(awaiting)" in text.split()
    assert "Completed" in text.split()
    assert max(len(line) for line in text.splitlines()) <= 80


def test_library_task_names_read_as_the_user_wrote_them() -> None:
    from asgitrace.views._text import short_task

    assert short_task("starlette.responses.StreamingResponse.__call__.<locals>.wrap") == (
        "StreamingResponse"
    )
    assert short_task("anyio._core._sockets.connect_tcp.<locals>.try_connect") == "connect_tcp"
    assert short_task("Task-3") == "Task-3"


def test_fitted_widths_never_exceed_the_room_nor_cut_a_word() -> None:
    import random

    from asgitrace.views._text import GAP, fit_widths

    rng = random.Random(19)
    for _ in range(300):
        columns = rng.randint(1, 7)
        words = ["a" * rng.randint(1, 14) for _ in range(40)]
        header = [" ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(columns)]
        rows = [
            [" ".join(rng.sample(words, rng.randint(1, 5))) for _ in range(columns)]
            for _ in range(rng.randint(1, 6))
        ]
        room = rng.randint(10, 140)
        widths = fit_widths(header, rows, room)
        if widths is None:
            continue
        assert sum(widths) + GAP * (columns - 1) <= room
        for i, width in enumerate(widths):
            cells = [header[i], *(row[i] for row in rows)]
            assert all(len(word) <= width for cell in cells for word in cell.split())


def _step(number: int, kind: str, task: str = "Task-1", **fields: Any) -> Any:
    from asgitrace.views import Step

    fields.setdefault("action", f"{kind} {number}")
    return Step(
        number=number,
        before=fields.pop("before", "f paused at app.py:1"),
        awaited=kind in ("await", "yield", "loop"),
        after="",
        output="None",
        offset_ns=number * 1000,
        kind=kind,
        task=task,
        **fields,
    )


def test_folding_merges_a_yield_into_the_await_of_the_same_line_and_counts_other_tasks() -> None:
    """Issue 19: the many suspensions inside one ``await client.get(url)`` read as one."""
    from asgitrace.views._fold import fold_steps

    steps = [_step(1, "received")]
    n = 2
    for kind in ("yield", "await", "await", "yield"):
        steps += [
            _step(n, kind, target="c.get(url)", action=f"{kind.title()} c.get(url)"),
            _step(n + 1, "loop", duration_ns=1_000_000),
            _step(n + 2, "await", task="Task-2", action="[Task-2] Await x"),
            _step(n + 3, "await", task="Task-3", action="[Task-3] Await y"),
            _step(n + 4, "resumed", action="Resume f after await (waited 1.0 ms)"),
        ]
        n += 5
    steps += [_step(n, "await", target="late()"), _step(n + 1, "sent")]
    folded = fold_steps(steps, "Task-1", budget=5)
    assert [s.kind for s in folded] == ["received", "wait", "await", "sent"]
    assert folded[1].action == "Await c.get(url) \u00d74 (other tasks ran meanwhile)"
    assert folded[1].duration_ns == 4_000_000
    assert [s.number for s in folded] == [1, 2, 3, 4]
    assert sum(len(s.covers or (s,)) for s in folded) == len(steps)
    unfolded = fold_steps(steps, "Task-1", budget=100)
    assert unfolded == steps
    other = fold_steps(
        [_step(1, "received"), *(_step(i, "await", task=f"Task-{i}") for i in range(2, 6))],
        "Task-1",
        budget=2,
    )
    assert other[1].action.endswith("4 other tasks ran (4 steps)")


def test_a_narrow_tracker_keeps_the_wait_before_the_return() -> None:
    """Final shows the response too: when a column must go, the return goes first."""
    data = reference_trace().to_dict()
    data["events"] = [e for e in data["events"] if e["kind"] != "returned"]  # before 3.12
    trace = Trace.from_dict(data)
    assert variable_tracker(trace).columns == (
        "Start",
        "After Step 2",
        "After Step 3",
        "After Step 5",
        "After Step 6",
        "Final",
    )
    assert variable_tracker(trace, max_steps=3).columns == (
        "Start",
        "After Step 2",
        "After Step 3",
        "After Step 6",
        "Final",
    )
    assert variable_tracker(trace, max_steps=2).columns == (
        "Start",
        "After Step 2",
        "After Step 3",
        "Final",
    )
    text = render(VariableTracker(trace), width=80)
    assert "(awaiting)" in text.split()


def _rows_of(text: str) -> dict[int, list[str]]:
    """The lines of each step of a rendered execution table, by step number."""
    rows: dict[int, list[str]] = {}
    current = 0
    for line in text.splitlines()[3:]:
        number = line[:5].strip()
        if number.isdigit():
            current = int(number)
        if current:
            rows.setdefault(current, []).append(line)
    return rows


@pytest.mark.parametrize("width", [80, 100])
def test_a_narrow_execution_table_merges_columns_instead_of_building_towers(width: int) -> None:
    """Issue 19: under 120 columns the states wrapped one word a line and under 100
    the Awaited? column went (steps of six lines, ten-cell columns). A step now reads
    in a few lines of a wide cell, and an awaited step still says so (in its action)."""
    text = render(ExecutionTable(reference_trace()), width=width)
    rows = _rows_of(text)
    assert sorted(rows) == [1, 2, 3, 4, 5, 6]
    assert max(len(lines) for lines in rows.values()) <= 4, text
    awaited = [n for n, lines in rows.items() if "[awaited" in " ".join(lines)]
    assert awaited == [3, 4], text
    step3 = " ".join(" ".join(rows[3]).split())
    assert "wait_endpoint paused at app.py:8 → Yield control to event loop" in step3
    assert max(len(line) for line in text.splitlines()) <= width


def _same_named_files_trace(root: str) -> Trace:
    """A request that awaits in ``app/api/routes/tags.py`` and blocks in
    ``app/db/repositories/tags.py`` (two files named ``tags.py``)."""
    routes, repositories = f"{root}/app/api/routes/tags.py", f"{root}/app/db/repositories/tags.py"
    data = reference_trace().to_dict()
    for event in data["events"]:
        if event["fields"].get("file"):
            event["fields"]["file"] = routes
            event["fields"]["line"] = 17
    data["events"].insert(
        5,
        _event(
            55,
            1_001_250,
            "blocked",
            duration_ns=120_000_000,
            file=repositories,
            line=9,
            code="time.sleep(0.12)",
            function="list_tags",
            started_ns=1_000_000_000 + 881_250_000,
        ),
    )
    return Trace.from_dict(data)


def test_places_are_paths_from_the_working_directory(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18: "tags.py:17" and "tags.py:9" side by side named two different files.
    The tables, key moments and summary now name them from the working directory."""
    from asgitrace.views import SummaryView, summarize

    monkeypatch.chdir(tmp_path)
    trace = _same_named_files_trace(str(tmp_path))
    text = render(ExecutionTable(trace), width=120) + render(KeyMoments(trace), width=120)
    text += render(SummaryView(summarize([trace]), blocking_threshold=0.1), width=120)
    flat = " ".join(text.split())
    assert "app/api/routes/tags.py:17" in flat, text
    assert "app/db/repositories/tags.py:9" in flat, text
    assert " tags.py:" not in flat, text
    assert "(tags.py:" not in flat, text


def test_a_place_outside_the_working_directory_is_shortened_from_the_left() -> None:
    from asgitrace.views import place

    long = "/usr/lib/python3.11/site-packages/asgitrace/cli/_demo.py"
    assert place(long, 24) == "…/asgitrace/cli/_demo.py:24"
    assert place("app.py", 8) == "app.py:8"
    assert place("", 8) == ""


def test_a_shortened_place_fits_its_width_with_the_ellipsis() -> None:
    from asgitrace.views import place

    shortened = place("/elsewhere/views/src/asgitrace/cli/_demo.py", 24)
    assert shortened == "…/src/asgitrace/cli/_demo.py:24"
    assert place("/a/" + "x" * 40 + ".py", 1) == "…/" + "x" * 40 + ".py:1"  # the name stays whole


def test_a_long_place_at_120_columns_merges_columns_rather_than_squeeze_the_action() -> None:
    """A place of ~30 cells in State Before left the wide table's Action 17 cells: five
    lines a step. Under 160 columns such a table takes the narrow layout instead."""
    trace = _same_named_files_trace("/outside/the/working/directory/project")
    text = render(ExecutionTable(trace), width=120)
    rows = _rows_of(text)
    assert max(len(lines) for lines in rows.values()) <= 3, text
    assert "Awaited?" not in text
    assert "[awaited" in text


@pytest.mark.parametrize("breaker", ["blocked", None])
def test_a_stream_cut_by_a_block_or_never_ended_keeps_each_chunk(breaker: str | None) -> None:
    """The streamed-body fold needs the send that ends the body, and nothing between
    that must stay a row (a block): the chunks before a block stay rows of their own
    (those after it may fold), and a body never ended folds not at all."""
    import dataclasses

    from asgitrace.views._fold import fold_steps

    def send(number: int, after: str, before: str = "Body chunk ready") -> Any:
        step = _step(number, "sent", before=before, body_bytes=10)
        return dataclasses.replace(step, after=after, awaited=False)

    part = "Part of the response sent"
    steps = [send(1, part, before="Response ready")]
    for n in range(2, 24, 2):  # over the 15-row budget, so the folds run
        steps += [_step(n, "await", task="Task-2"), send(n + 1, part)]
    if breaker:
        steps.insert(5, _step(90, breaker))
        steps.append(send(99, "Response sent to client"))
    folded = fold_steps(steps, "Task-1")
    actions = [step.action for step in folded]
    assert "sent 3" in actions
    assert "sent 5" in actions
    kinds = [step.kind for step in folded]
    if breaker:
        assert kinds.index("stream") > kinds.index("blocked")
    else:
        assert "stream" not in kinds
