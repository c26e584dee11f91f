"""asgitrace never makes a blocking call on a loop thread (issue 16).

The whole suite runs under blockbuster (the autouse fixture in conftest.py), set to raise
when the innermost non-stdlib frame of a blocking call (a contended lock, a condition or
event wait, a sleep, file or socket I/O) is asgitrace's. These tests prove the detector
bites, then drive every boundary where the loop used to wait for the watchdog: the task
factory, step starts past the watchdog's due time, trace close, under 100 concurrent
requests, on asyncio and uvloop, in-process and through uvicorn.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import blockbuster
import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse

import asgitrace
import asgitrace.capture._loopmon as loopmon
from asgitrace import Tracer, instrument
from asgitrace.capture._loopmon import _WATCHDOG
from asgitrace.cli._server import running_server

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is installed by .ci/run
    uvloop = None

CONCURRENT = 100
_HERE = os.path.dirname(os.path.abspath(asgitrace.__file__))


def _function_in(filename: str) -> Callable[[threading.Lock], Any]:
    """`lock.acquire()` compiled as if it were written in *filename*."""
    namespace: dict[str, Any] = {}
    exec(compile("def take(lock):\n    return lock.acquire()\n", filename, "exec"), namespace)
    return namespace["take"]  # type: ignore[no-any-return]


async def test_the_detector_raises_on_a_blocking_call_made_by_an_asgitrace_frame(
    blockbuster_flags: list[tuple[str, str]],
) -> None:
    held = threading.Lock()
    held.acquire()  # contended: acquiring it would wait
    probe = os.path.join(_HERE, "_probe.py")
    take = _function_in(probe)
    with pytest.raises(blockbuster.BlockingError, match=r"lock\.acquire"):
        take(held)
    assert blockbuster_flags == [("threading.Lock.acquire", f"{probe}:2 in take")]
    blockbuster_flags.clear()  # expected: the suite's fixture would fail the test


async def test_the_detector_lets_the_apps_own_blocking_calls_through() -> None:
    # The apps in this suite block the loop on purpose: that is what asgitrace shows.
    free = threading.Lock()
    take = _function_in(__file__)
    assert take(free) is True
    time.sleep(0)


def build_app() -> FastAPI:
    app = FastAPI()

    async def child(n: int) -> int:
        await asyncio.sleep(0)
        return n

    @app.get("/gather")
    async def gather() -> list[int]:
        return list(await asyncio.gather(*(child(n) for n in range(3))))

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for size in (3, 5):
                await asyncio.sleep(0)
                yield b"s" * size

        return StreamingResponse(chunks())

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(asyncio.sleep, 0)
        return {"ok": True}

    @app.get("/sync")
    def sync_endpoint() -> dict[str, bool]:
        return {"sync": True}

    @app.middleware("http")
    async def passthrough(request: Any, call_next: Any) -> Any:
        return await call_next(request)

    return app


PATHS = ("/gather", "/stream", "/background", "/sync")


class DueAtEveryStep:
    """The watchdog as the loop monitors see it, due at every step boundary: each one
    takes the knock path (the real one)."""

    due_ns = 0

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.knocks = 0
        monkeypatch.setattr(loopmon, "_WATCHDOG", self)

    def knock(self) -> None:
        self.knocks += 1
        _WATCHDOG.knock()

    def __getattr__(self, name: str) -> Any:
        return getattr(_WATCHDOG, name)


async def _hundred(client: httpx.AsyncClient) -> list[int]:
    responses = await asyncio.gather(
        *(client.get(PATHS[i % len(PATHS)]) for i in range(CONCURRENT))
    )
    return [r.status_code for r in responses]


def _run(loop: str, main: Callable[[], Any]) -> Any:
    if loop == "uvloop":
        if uvloop is None:  # pragma: no cover
            pytest.skip("uvloop is not installed")
        return uvloop.run(main())
    return asyncio.run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("transport", ["in-process", "uvicorn"])
def test_a_hundred_concurrent_traced_requests_never_block_the_loop(
    loop: str, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    due = DueAtEveryStep(monkeypatch)
    tracer = Tracer(max_traces=CONCURRENT)
    app = instrument(build_app(), tracer=tracer)

    async def main() -> list[int]:
        if transport == "in-process":
            asgi = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=asgi, base_url="http://test") as client:
                return await _hundred(client)
        async with (
            running_server(app) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            return await _hundred(client)

    statuses = _run(loop, main)

    assert statuses == [200] * CONCURRENT
    assert len(tracer.traces) == CONCURRENT
    assert {t.outcome for t in tracer.traces} == {"completed"}
    assert due.knocks > CONCURRENT  # every step boundary took the knock path
