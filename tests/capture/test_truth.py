"""Rows that tell the truth on real app shapes (issue 18)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException

from asgitrace import Trace, TraceMiddleware, Tracer
from asgitrace.views import execution_steps, variable_tracker


def _app() -> tuple[FastAPI, Tracer]:
    app = FastAPI()

    def require_user() -> str:
        raise HTTPException(status_code=401, detail="Not authenticated")

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.get("/private")
    async def read_private(user: str = Depends(require_user)) -> dict[str, str]:
        return {"user": user}

    @app.get("/missing")
    async def read_missing() -> dict[str, str]:
        raise HTTPException(status_code=404, detail="nope")

    @app.get("/sync")
    def get_item() -> dict[str, str]:
        time.sleep(0)
        return {"item": "sync"}

    @app.get("/wait")
    async def wait_endpoint() -> dict[str, str]:
        await asyncio.sleep(0.001)
        return {"message": "Done waiting"}

    tracer = Tracer(blocking_threshold=1.0)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    return app, tracer


async def _get(path: str) -> tuple[int, Trace]:
    app, tracer = _app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get(path)
    return response.status_code, tracer.traces[-1]


def _states(trace: Trace) -> tuple[str, ...]:
    tracker = variable_tracker(trace)
    return next(states for name, states in tracker.rows if name.endswith("function state"))


@pytest.mark.parametrize(("path", "status"), [("/items/foo", 422), ("/private", 401)])
async def test_no_entered_when_the_endpoint_never_ran(path: str, status: int) -> None:
    """A 422 validation failure and a 401 from a dependency never ran the endpoint (issue 18)."""
    got, trace = await _get(path)
    assert got == status
    assert trace.of_kind("entered") == ()
    assert not any(step.kind == "entered" for step in execution_steps(trace))
    assert "Running" not in _states(trace)


@pytest.mark.parametrize(
    ("path", "status", "function"),
    [("/items/3", 200, "read_item"), ("/missing", 404, "read_missing"), ("/sync", 200, "get_item")],
)
async def test_entered_when_the_endpoint_ran(path: str, status: int, function: str) -> None:
    got, trace = await _get(path)
    assert got == status
    [entered] = trace.of_kind("entered")
    assert str(entered.get("function")).endswith(function)


def _shapes() -> tuple[FastAPI, Tracer]:
    app = FastAPI()

    @app.get("/block")
    async def block_first() -> dict[str, str]:
        time.sleep(0.12)
        await asyncio.sleep(0)
        return {"message": "Done waiting"}

    @app.get("/sync")
    def get_item() -> dict[str, str]:
        return {"item": "sync"}

    tracer = Tracer(blocking_threshold=0.05)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    return app, tracer


async def _run(app: Any, tracer: Tracer, path: str) -> Trace:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get(path)).status_code == 200
    return tracer.traces[-1]


def _index(trace: Trace, kind: str) -> int:
    return next(i for i, e in enumerate(trace.events) if e.kind == kind)


async def test_entered_comes_before_the_blocking_step_it_started() -> None:
    """A blocking first step: derived `entered` is at the step's start, before the block (#18)."""
    app, tracer = _shapes()
    trace = await _run(app, tracer, "/block")
    [entered] = trace.of_kind("entered")
    [blocked] = trace.of_kind("blocked")
    assert _index(trace, "entered") < _index(trace, "blocked")
    assert entered.t_ns <= blocked.t_ns - 100_000_000  # before the 120 ms sleep began
    seqs = [e.seq for e in trace.events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


async def test_sync_endpoint_entered_before_its_thread_wait() -> None:
    app, tracer = _shapes()
    trace = await _run(app, tracer, "/sync")
    assert _index(trace, "entered") < _index(trace, "sent")
    [entered] = trace.of_kind("entered")
    assert entered.t_ns <= trace.of_kind("sent")[0].t_ns


async def test_entered_behind_an_http_middleware_precedes_the_middleware_resuming() -> None:
    app, tracer = _shapes()

    @app.middleware("http")
    async def passthrough(request: Any, call_next: Any) -> Any:
        return await call_next(request)

    trace = await _run(app, tracer, "/block")
    entered = _index(trace, "entered")
    [blocked] = trace.of_kind("blocked")
    assert entered < _index(trace, "blocked")
    assert trace.events[entered].t_ns <= blocked.t_ns - 100_000_000


@pytest.mark.parametrize("path", ["/wait", "/sync"])
async def test_returned_value_on_every_python(path: str) -> None:
    """The tracker's response row shows what the endpoint returned, 3.10/3.11 too (#18)."""
    _, trace = await _get(path)
    [returned] = trace.of_kind("returned")
    expected = "{'message': 'Done waiting'}" if path == "/wait" else "{'item': 'sync'}"
    assert returned.get("value") == expected
    response = dict(variable_tracker(trace).rows)["response"]
    assert response[-1] == expected


async def test_sync_endpoint_entered_before_the_thread_ran_it() -> None:
    _, trace = await _get("/sync")
    entered = _index(trace, "entered")
    resumed = [i for i, e in enumerate(trace.events) if e.kind == "resumed"]
    assert entered < resumed[-1]
    assert _states(trace)[0:1] == ("Not started",)
    assert "function state" in dict(variable_tracker(trace).rows)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="sys.monitoring gives the value")
async def test_return_hook_never_replaces_another_profiler() -> None:
    seen: list[str] = []

    def profiler(frame: Any, event: str, arg: Any) -> None:
        seen.append(event)

    sys.setprofile(profiler)
    try:
        _, trace = await _get("/wait")
    finally:
        sys.setprofile(None)
    assert seen
    assert trace.of_kind("returned") == ()


async def test_returned_value_after_several_awaits_and_none_from_a_loop() -> None:
    """3.10/3.11 arm the return hook only at the endpoint's last await (#18)."""
    app = FastAPI()

    @app.get("/two")
    async def two() -> dict[str, int]:
        await asyncio.sleep(0)
        x = 2
        await asyncio.sleep(0)
        return {"x": x}

    @app.get("/loop")
    async def loop() -> dict[str, int]:
        total = 0
        for i in range(3):
            await asyncio.sleep(0)
            total += i
        return {"total": total}

    tracer = Tracer(blocking_threshold=1.0)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    two_trace = await _run(app, tracer, "/two")
    loop_trace = await _run(app, tracer, "/loop")
    assert [e.get("value") for e in two_trace.of_kind("returned")] == ["{'x': 2}"]
    values = [e.get("value") for e in loop_trace.of_kind("returned")]
    assert values == (["{'total': 3}"] if sys.version_info >= (3, 12) else [])


async def test_a_sync_endpoint_is_called_in_the_thread_pool() -> None:
    """A `def` endpoint is not "Enter async function" (#18)."""
    _, trace = await _get("/sync")
    actions = [step.action for step in execution_steps(trace)]
    calls = [a for a in actions if "Call get_item in the thread pool" in a]
    assert len(calls) == 1
    assert not any("Enter async function" in a for a in actions)
