"""Waits with no app frame are named by their own coroutine, not the endpoint's (issue 18)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from asgitrace import Trace, TraceMiddleware, Tracer
from asgitrace.views import execution_steps


def _app() -> tuple[FastAPI, Tracer]:
    app = FastAPI()

    @app.get("/release")
    async def retrieve_article() -> dict[str, str]:
        # A pool's release task: a child whose coroutine is library code only.
        release = asyncio.ensure_future(asyncio.sleep(0.002))
        await asyncio.sleep(0.004)
        await release
        return {"slug": "a"}

    @app.get("/stream")
    async def stream_story() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            await asyncio.sleep(0.001)
            yield b"x"

        return StreamingResponse(chunks())

    tracer = Tracer(blocking_threshold=1.0)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    return app, tracer


async def _actions(path: str) -> list[str]:
    app, tracer = _app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await http.get(path)
    trace: Trace = tracer.traces[-1]
    return [step.action for step in execution_steps(trace)]


async def test_a_library_child_task_is_named_by_its_coroutine() -> None:
    actions = await _actions("/release")
    child = [a for a in actions if a.startswith("[") and "Resume" in a]
    assert child
    assert all("retrieve_article" not in a for a in child)
    assert any("Resume sleep after await" in a for a in child)


async def test_a_streaming_response_task_group_wait_is_not_the_endpoint() -> None:
    actions = await _actions("/stream")
    request_resumes = [a for a in actions if a.startswith("Resume")]
    assert request_resumes
    assert all("stream_story" not in a for a in request_resumes)
