"""After-response work is named by what it is (issue 18)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
from fastapi import BackgroundTasks, Depends, FastAPI

from asgitrace import Trace, TraceMiddleware, Tracer
from asgitrace.views import key_moments


def _app() -> tuple[FastAPI, Tracer]:
    app = FastAPI()

    def session() -> Iterator[int]:
        yield 1
        time.sleep(0.002)  # closing the session, in the worker thread

    def send_email() -> None:
        time.sleep(0.002)

    @app.get("/teardown")
    async def with_session(db: int = Depends(session)) -> dict[str, int]:
        return {"db": db}

    @app.get("/background")
    async def with_background(tasks: BackgroundTasks) -> dict[str, str]:
        tasks.add_task(send_email)
        return {"queued": "yes"}

    tracer = Tracer(blocking_threshold=1.0)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    return app, tracer


async def _moment(path: str) -> str:
    app, tracer = _app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await http.get(path)
    trace: Trace = tracer.traces[-1]
    return next(m for m in key_moments(trace) if "after the response" in m)


async def test_yield_dependency_teardown_is_not_called_background_tasks() -> None:
    moment = await _moment("/teardown")
    assert "(dependency teardown)" in moment
    assert "background" not in moment


async def test_background_task_is_named() -> None:
    moment = await _moment("/background")
    assert "(background task send_email)" in moment
