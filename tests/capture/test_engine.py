"""The event-loop engine: suspensions, entered, child tasks, threads, other work, blocking."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import StreamingResponse

from asgitrace import EventKind, Trace, TraceMiddleware, Tracer, instrument
from asgitrace.capture._loopmon import RING
from asgitrace.cli._server import running_server

DELAY = 0.03
SLOW = 0.12  # a blocking step, over the 0.05 s threshold used below
BLOCKING_THRESHOLD = 0.05
# The reference example's /wait never blocks; its tests use a threshold no step of a
# loaded machine's scheduler jitter reaches, so that "no blocked event" cannot flake.
NEVER_BLOCKS = 1.0

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is installed by .ci/run
    uvloop = None


def _line_of(func: Callable[..., Any], text: str) -> int:
    lines, first = inspect.getsourcelines(func)
    for offset, line in enumerate(lines):
        if text in line:
            return first + offset
    raise AssertionError(f"{text!r} not in {func.__name__}")  # pragma: no cover


def reference_app() -> FastAPI:
    app = FastAPI()

    @app.get("/wait")
    async def wait_endpoint() -> dict[str, str]:
        await asyncio.sleep(DELAY)
        return {"message": "Done waiting"}

    @app.get("/block")
    async def block_endpoint() -> dict[str, str]:
        time.sleep(SLOW)
        return {"message": "Done waiting"}

    app.state.wait = wait_endpoint
    app.state.block = block_endpoint
    return app


def traced(app: FastAPI, **options: Any) -> Tracer:
    options.setdefault("blocking_threshold", BLOCKING_THRESHOLD)
    tracer = Tracer(**options)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    return tracer


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def run_on(loop: str, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run *main* on a fresh asyncio or uvloop loop (pytest-asyncio's loop is asyncio)."""
    if loop == "uvloop":
        if uvloop is None:  # pragma: no cover
            pytest.skip("uvloop is not installed")
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    loop_obj = factory()
    try:
        return loop_obj.run_until_complete(main())
    finally:
        loop_obj.close()


def assert_reference_trace(trace: Trace, app: FastAPI) -> None:
    trace.assert_order(
        "received",
        ("entered", "wait_endpoint"),
        ("awaiting", "asyncio.sleep(DELAY)"),
        "yielded",
        "resumed",
        ("sent", 200),
        "completed",
    )
    [awaiting] = trace.awaits()
    assert awaiting.get("function") == "reference_app.<locals>.wait_endpoint"
    assert awaiting.get("line") == _line_of(app.state.wait, "await asyncio.sleep")
    assert awaiting.get("code") == "await asyncio.sleep(DELAY)"
    assert awaiting.get("file") == __file__
    assert awaiting.get("cooperative") is False
    [resumed] = trace.of_kind("resumed")
    # asyncio may fire a timer up to its clock resolution early; never much later here.
    assert DELAY * 1e9 - 2e6 <= resumed.get("waited_ns") < DELAY * 1e9 + 0.5e9
    assert 0 <= resumed.get("lag_ns") < 0.5e9
    assert trace.blocking() == ()


async def test_reference_example_in_process() -> None:
    app = reference_app()
    tracer = traced(app, blocking_threshold=NEVER_BLOCKS)
    async with client(app) as c:
        response = await c.get("/wait")
    assert response.json() == {"message": "Done waiting"}
    assert_reference_trace(tracer.traces[0], app)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_reference_example_through_uvicorn(loop: str) -> None:
    app = reference_app()
    tracer = traced(app, blocking_threshold=NEVER_BLOCKS)

    async def main() -> None:
        async with running_server(app) as url, httpx.AsyncClient(base_url=url) as c:
            assert (await c.get("/wait")).status_code == 200

    run_on(loop, main)
    assert_reference_trace(tracer.traces[0], app)


def test_entered_is_exact_on_312_and_derived_before() -> None:
    app = reference_app()
    tracer = traced(app)

    async def main() -> None:
        async with client(app) as c:
            await c.get("/wait")

    run_on("asyncio", main)
    [entered] = tracer.traces[0].of_kind("entered")
    assert entered.get("derived") is (sys.version_info < (3, 12))
    returned = tracer.traces[0].of_kind("returned")
    # Exact on 3.12+; before, from a profile hook on the endpoint's last await (issue 18).
    assert [e.get("value") for e in returned] == ["{'message': 'Done waiting'}"]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_blocking_step_names_the_culprit_line(loop: str) -> None:
    app = reference_app()
    tracer = traced(app)

    async def main() -> None:
        async with running_server(app) as url, httpx.AsyncClient(base_url=url) as c:
            assert (await c.get("/block")).status_code == 200

    run_on(loop, main)
    trace = tracer.traces[0]
    [blocked] = trace.blocking()
    assert blocked.get("code") == "time.sleep(SLOW)"
    assert blocked.get("line") == _line_of(app.state.block, "time.sleep(SLOW)")
    assert blocked.get("file") == __file__
    assert blocked.get("function") == "block_endpoint"
    assert blocked.get("duration_ns") >= SLOW * 1e9
    assert "after_response" not in blocked.fields
    assert trace.awaits() == ()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_concurrent_waits_overlap_and_see_each_other(loop: str) -> None:
    app = reference_app()
    tracer = traced(app)

    async def main() -> None:
        async with running_server(app) as url, httpx.AsyncClient(base_url=url) as c:
            responses = await asyncio.gather(c.get("/wait"), c.get("/wait"))
        assert [r.status_code for r in responses] == [200, 200]

    run_on(loop, main)
    first, second = sorted(tracer.traces, key=lambda t: t.start_ns)
    assert second.start_ns < first.end_ns  # they overlap in time
    waits = [t.of_kind("resumed")[0] for t in (first, second)]
    assert any(w.get("other_requests", 0) >= 1 for w in waits)
    assert all(w.get("other_steps", 0) >= 1 for w in waits)


async def test_what_ran_while_a_trace_waited_is_fixed_when_it_closes() -> None:
    """Issue 17: a finished trace reads the loop's other work from its own record, not from
    the loop monitor's ring, which later steps overwrite."""
    gate = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/hold":
            await gate.wait()
        else:
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def spin() -> None:
        for _ in range(RING + 100):  # more steps than the ring remembers
            await asyncio.sleep(0)

    tracer = Tracer()
    transport = httpx.ASGITransport(app=instrument(app, tracer=tracer))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        held = asyncio.create_task(client.get("/hold"))  # in flight: later tasks are timed
        await asyncio.sleep(0)
        await asyncio.gather(client.get("/a"), client.get("/b"))
        await asyncio.create_task(spin())
        gate.set()
        await held

    waits = [t.of_kind("resumed")[0] for t in tracer.traces if t.path != "/hold"]  # read now
    assert any(w.get("other_requests", 0) >= 1 for w in waits)
    assert all("other_tasks" in w.fields for w in waits if w.get("other_steps"))


def test_blocking_requests_are_served_one_after_another() -> None:
    app = reference_app()
    tracer = traced(app)

    async def main() -> None:
        async with running_server(app) as url, httpx.AsyncClient(base_url=url) as c:
            await asyncio.gather(c.get("/block"), c.get("/block"))

    run_on("asyncio", main)
    first, second = sorted(tracer.traces, key=lambda t: t.start_ns)
    # The second request's endpoint cannot start until the first one's step ends.
    [first_block] = first.blocking()
    [second_block] = second.blocking()
    assert second_block.get("started_ns") >= first_block.t_ns - 1_000_000
    assert second.end_ns - first.start_ns >= 2 * SLOW * 1e9


async def test_child_tasks_of_gather_belong_to_the_request() -> None:
    app = FastAPI()

    async def child(n: int) -> int:
        await asyncio.sleep(0.001 * n)
        return n

    @app.get("/gather")
    async def gather_endpoint() -> list[int]:
        return list(await asyncio.gather(child(1), child(2)))

    tracer = traced(app)
    async with client(app) as c:
        assert (await c.get("/gather")).json() == [1, 2]
    trace = tracer.traces[0]
    spawned = trace.of_kind("spawned")
    assert [e.get("coro") for e in spawned] == [
        "test_child_tasks_of_gather_belong_to_the_request.<locals>.child"
    ] * 2
    children = {e.task for e in spawned}
    assert {e.get("parent") for e in spawned} == {trace.task}
    assert {e.task for e in trace.of_kind("task_done")} == children
    child_awaits = [e for e in trace.awaits() if e.task in children]
    assert {e.get("code") for e in child_awaits} == {"await asyncio.sleep(0.001 * n)"}
    trace.assert_order(
        ("awaiting", "asyncio.gather(child(1), child(2))"), "spawned", "spawned", "completed"
    )


async def test_base_http_middleware_endpoint_runs_in_a_traced_child_task() -> None:
    app = reference_app()

    @app.middleware("http")
    async def passthrough(request: Request, call_next: Any) -> Any:
        return await call_next(request)

    tracer = traced(app)
    async with client(app) as c:
        assert (await c.get("/wait")).status_code == 200
    trace = tracer.traces[0]
    [endpoint_wait] = [e for e in trace.awaits() if e.get("code") == "await asyncio.sleep(DELAY)"]
    assert endpoint_wait.task != trace.task
    assert endpoint_wait.task in {e.task for e in trace.of_kind("spawned")}
    assert any(e.get("code") == "return await call_next(request)" for e in trace.awaits())


async def test_background_tasks_are_after_response_work() -> None:
    app = FastAPI()

    async def job() -> None:
        await asyncio.sleep(0.001)

    @app.get("/bg")
    async def with_background(background_tasks: BackgroundTasks) -> dict[str, bool]:
        background_tasks.add_task(job)
        return {"ok": True}

    tracer = traced(app)
    async with client(app) as c:
        assert (await c.get("/bg")).status_code == 200
    trace = tracer.traces[0]
    [job_wait] = [e for e in trace.awaits() if e.get("code") == "await asyncio.sleep(0.001)"]
    last_body = [e for e in trace.of_kind("sent") if e.get("type") == "http.response.body"][-1]
    assert job_wait.seq > last_body.seq
    yielded_after = next(e for e in trace.of_kind("yielded") if e.seq > job_wait.seq)
    assert yielded_after.get("after_response") is True


async def test_sync_endpoint_shows_as_an_await_on_a_worker_thread() -> None:
    app = FastAPI()

    @app.get("/sync")
    def sync_endpoint() -> dict[str, bool]:
        time.sleep(0.3)  # over the threshold: it would count, were it on the loop
        return {"sync": True}

    tracer = traced(app, blocking_threshold=0.2)  # far over any scheduler jitter
    async with client(app) as c:
        assert (await c.get("/sync")).json() == {"sync": True}
    trace = tracer.traces[0]
    [in_thread] = [
        e
        for e in trace.awaits()
        if e.get("thread") == sync_endpoint.__qualname__ and not e.get("cooperative")
    ]
    assert in_thread.get("target") == f"{sync_endpoint.__qualname__}() in a worker thread"
    resumed = next(e for e in trace.of_kind("resumed") if e.seq > in_thread.seq)
    assert resumed.get("waited_ns") >= 0.3e9 - 2e6
    assert trace.blocking() == ()


async def test_cooperative_yield_is_labelled() -> None:
    app = FastAPI()

    @app.get("/yield")
    async def yielder() -> int:
        await asyncio.sleep(0)
        return 1

    tracer = traced(app)
    async with client(app) as c:
        await c.get("/yield")
    [site] = [e for e in tracer.traces[0].awaits() if e.get("function")]
    assert site.get("cooperative") is True
    assert site.get("target") == "asyncio.sleep(0) (cooperative yield)"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
async def test_eager_task_factory_is_kept_and_tasks_are_traced() -> None:
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined,unused-ignore]
    try:
        app = FastAPI()

        async def child() -> int:
            await asyncio.sleep(0.001)
            return 7

        @app.get("/eager")
        async def eager() -> int:
            return await asyncio.create_task(child())

        tracer = traced(app)
        async with client(app) as c:
            assert (await c.get("/eager")).json() == 7
        factory = loop.get_task_factory()
        # Rebuilt with create_eager_task_factory: anyio recognises it by its code object.
        assert factory.__code__ is asyncio.eager_task_factory.__code__  # type: ignore[union-attr,attr-defined,unused-ignore]
        trace = tracer.traces[0]
        assert len(trace.of_kind("spawned")) == 1
        [spawned] = trace.of_kind("spawned")
        child_events = [e.kind for e in trace.events if e.task == spawned.task]
        assert child_events[0] is EventKind.SPAWNED
        assert EventKind.TASK_DONE in child_events
    finally:
        loop.set_task_factory(None)


async def test_existing_task_factory_is_chained_with_keywords() -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []

    def custom(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        seen.append(kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(custom)
    try:
        app = FastAPI()

        @app.get("/named")
        async def named() -> str:
            ctx = contextvars.copy_context()
            task = asyncio.create_task(asyncio.sleep(0, "x"), name="my-task", context=ctx)
            await task
            return task.get_name()

        tracer = traced(app)
        async with client(app) as c:
            assert (await c.get("/named")).json() == "my-task"
        # Whatever keywords this Python passes to a factory reach the chained one untouched.
        assert any(isinstance(k.get("context"), contextvars.Context) for k in seen)
        assert [e.task.name for e in tracer.traces[0].of_kind("spawned")] == ["my-task"]
    finally:
        loop.set_task_factory(None)


async def test_unnamed_tasks_keep_their_default_names() -> None:
    app = FastAPI()

    @app.get("/unnamed")
    async def unnamed() -> str:
        task = asyncio.create_task(asyncio.sleep(0))
        await task
        return task.get_name()

    traced(app)
    async with client(app) as c:
        name = (await c.get("/unnamed")).json()
    assert name.startswith("Task-")


async def test_task_introspection_is_unchanged() -> None:
    app = FastAPI()
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: dict[str, Any] = {}

    async def child() -> None:
        seen["var"] = var.get()
        seen["self"] = asyncio.current_task()
        await asyncio.sleep(0.001)

    @app.get("/introspect")
    async def introspect() -> dict[str, Any]:
        var.set("request")
        task = asyncio.create_task(child())
        await asyncio.sleep(0)
        stack = [f.f_code.co_name for f in task.get_stack()]
        coro_repr = repr(task)
        await task
        return {"stack": stack, "repr": coro_repr, "same": seen["self"] is task}

    traced(app)
    async with client(app) as c:
        body = (await c.get("/introspect")).json()
    assert body["stack"] == ["child"]
    assert "coro=<test_task_introspection_is_unchanged.<locals>.child()" in body["repr"]
    assert body["same"] is True
    assert seen["var"] == "request"


async def test_cancellation_is_recorded_and_propagates(
    scope: Callable[..., dict[str, Any]],
) -> None:
    app = FastAPI()
    started = asyncio.Event()

    @app.get("/hang")
    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    tracer = traced(app)
    http_scope = scope("/hang")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    from asgitrace import instrument

    task = asyncio.create_task(instrument(app, tracer=tracer)(http_scope, receive, send))
    await started.wait()
    task.cancel("client went away")
    with pytest.raises(asyncio.CancelledError):
        await task
    trace = tracer.traces[0]
    assert trace.outcome == "cancelled"
    trace.assert_order(("awaiting", "asyncio.Event().wait()"), "yielded", "resumed", "cancelled")


async def test_streaming_disconnect_is_recorded(scope: Callable[..., dict[str, Any]]) -> None:
    app = FastAPI()

    async def chunks() -> Any:
        for i in range(1000):
            yield f"{i}\n"
            await asyncio.sleep(0)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        return StreamingResponse(chunks())

    tracer = traced(app)
    http_scope = scope("/stream")
    sent: list[dict[str, Any]] = []
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 3:
            disconnect.set()

    from asgitrace import instrument

    await instrument(app, tracer=tracer)(http_scope, receive, send)
    trace = tracer.traces[0]
    assert trace.outcome == "disconnected"
    assert EventKind.DISCONNECTED in trace.kinds
    streamed = [e for e in trace.awaits() if e.get("function") == chunks.__qualname__]
    assert streamed  # the async generator's awaits are found through asend()


async def test_two_hundred_concurrent_requests_keep_their_own_events() -> None:
    app = FastAPI()

    async def child(tag: str) -> str:
        await asyncio.sleep(0.001)
        return tag

    @app.get("/item/{tag}")
    async def item(tag: str) -> str:
        await asyncio.sleep(0.001)
        return await asyncio.create_task(child(tag))

    tracer = traced(app, max_traces=500)
    async with client(app) as c:
        responses = await asyncio.gather(*(c.get(f"/item/t{i}") for i in range(200)))
    assert [r.json() for r in responses] == [f"t{i}" for i in range(200)]
    traces = tracer.traces
    assert len(traces) == 200
    assert len({t.id for t in traces}) == 200
    owners: dict[int, str] = {}
    for trace in traces:
        [spawned] = trace.of_kind("spawned")
        own_tasks = {trace.task, spawned.task}
        assert {e.task for e in trace.events} == own_tasks
        for task in own_tasks:
            assert owners.setdefault(task.id, trace.id) == trace.id


async def test_watched_locals_are_snapshotted_at_suspensions_and_return() -> None:
    app = FastAPI()

    @app.get("/watch")
    async def watched() -> dict[str, int]:
        total = 1
        password = "hunter2"
        await asyncio.sleep(0.001)
        total = 5
        assert password
        return {"total": total}

    tracer = traced(app, watch=("total", "password"))
    async with client(app) as c:
        await c.get("/watch")
    trace = tracer.traces[0]
    [site] = [e for e in trace.awaits() if e.get("function")]
    assert site.get("watched") == {"total": "1", "password": "[redacted]"}
    returned = trace.of_kind("returned")
    assert returned[0].get("watched") == {"total": "5", "password": "[redacted]"}
    assert "hunter2" not in repr(trace.to_dict())


async def test_a_failing_probe_disables_itself_and_the_app_is_unaffected(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import asgitrace._support._log
    from asgitrace.capture import _accel

    monkeypatch.setattr(asgitrace._support._log, "_reported", set())

    def broken_walk(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("probe bug")

    monkeypatch.setattr(_accel.MODULE, "walk", broken_walk)  # the stepper that runs
    app = reference_app()
    tracer = traced(app)
    async with client(app) as c:
        responses = [await c.get("/wait") for _ in range(2)]
    assert [r.json() for r in responses] == [{"message": "Done waiting"}] * 2
    assert [t.outcome for t in tracer.traces] == ["completed", "completed"]
    failures = [r for r in caplog.records if "coroutine stepper" in r.getMessage()]
    assert len(failures) == 1  # logged once, not per request


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
async def test_a_failing_monitoring_callback_never_reaches_the_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asgitrace._support._log
    import asgitrace.capture._entry

    monkeypatch.setattr(asgitrace._support._log, "_reported", set())

    def broken(*args: Any) -> None:
        raise RuntimeError("callback bug")

    monkeypatch.setattr(asgitrace.capture._entry, "_started", broken)
    monkeypatch.setattr(asgitrace.capture._entry, "_returned", broken)
    app = reference_app()
    traced(app)
    async with client(app) as c:
        assert (await c.get("/wait")).json() == {"message": "Done waiting"}


def test_blocking_is_recorded_for_every_request_not_just_the_first() -> None:
    """Later requests run in tasks the hook drives; their block is still recorded (the
    request finishes inside the hooked task's step, so it must be judged before).

    The first request installs the hook; the three after it arrive together, on
    connections (and so server tasks) made after that. Real blocking: 0.12 s against a
    0.05 s threshold, a margin no scheduler jitter reaches.
    """
    app = reference_app()
    tracer = traced(app)

    async def main() -> None:
        async with running_server(app) as url, httpx.AsyncClient(base_url=url) as c:
            assert (await c.get("/block")).status_code == 200
            responses = await asyncio.gather(*(c.get("/block") for _ in range(3)))
            assert [r.status_code for r in responses] == [200, 200, 200]

    run_on("asyncio", main)
    assert [len(t.blocking()) for t in tracer.traces] == [1, 1, 1, 1]
    assert {t.blocking()[0].get("code") for t in tracer.traces} == {"time.sleep(SLOW)"}
