"""A request that waited longer because another request blocked the loop is told who (#18)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from fastapi import FastAPI

from asgitrace import Trace, TraceMiddleware, Tracer
from asgitrace.views import execution_steps, key_moments, place


def _app() -> tuple[FastAPI, Tracer, asyncio.Event]:
    app = FastAPI()
    waiting = asyncio.Event()

    @app.get("/db")
    async def innocent() -> dict[str, str]:
        waiting.set()
        await asyncio.sleep(0.01)  # stands for a database call
        return {"ok": "yes"}

    @app.get("/slow")
    async def guilty() -> dict[str, str]:
        await waiting.wait()
        time.sleep(0.15)
        return {"ok": "late"}

    tracer = Tracer(blocking_threshold=0.05)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    return app, tracer, waiting


async def test_the_victim_names_the_request_and_line_that_held_the_loop() -> None:
    app, tracer, _ = _app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await asyncio.gather(http.get("/slow"), http.get("/db"))
    by_path = {t.path: t for t in tracer.traces}
    victim: Trace = by_path["/db"]
    culprit: Trace = by_path["/slow"]
    [resumed] = [e for e in victim.of_kind("resumed") if e.get("blocked_by")]
    [blocker] = resumed.get("blocked_by")
    assert blocker["trace_id"] == culprit.id
    assert (blocker["method"], blocker["path"]) == ("GET", "/slow")
    assert blocker["function"] == "guilty"
    assert blocker["duration_ns"] >= 100_000_000
    assert str(blocker["file"]).endswith("test_victims.py")
    [loop_row] = [s for s in execution_steps(victim) if "blocking the loop" in s.action]
    where = place(__file__, blocker["line"])  # as the views write places (issue 18)
    assert f"GET /slow (trace {culprit.id}) blocking the loop at {where}" in loop_row.action
    assert any("GET /slow" in m and "blocking the loop" in m for m in key_moments(victim))
    data = json.loads(json.dumps(victim.to_dict()))
    assert "blocked_by" in json.dumps(data)
    again = Trace.from_dict(data)
    assert [s.action for s in execution_steps(again)] == [s.action for s in execution_steps(victim)]


async def test_the_summary_line_says_how_much_of_the_wait_was_others_blocking() -> None:
    from asgitrace.views import request_line, trace_stats

    app, tracer, _ = _app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await asyncio.gather(http.get("/slow"), http.get("/db"))
    victim = next(t for t in tracer.traces if t.path == "/db")
    assert trace_stats(victim).held_ns >= 100_000_000
    assert "of it others' blocking" in request_line(victim).plain
