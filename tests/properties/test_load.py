"""Load: a thousand concurrent requests and cancellation storms through a real uvicorn.

The server listens on 127.0.0.1 with an ephemeral port and runs in the test's own event
loop; the clients are raw asyncio connections (one request per connection, as many at
once as the test asks), so that the client side costs little and hides nothing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse

from asgitrace import Trace, Tracer, instrument
from asgitrace.capture._accel import Stepper
from asgitrace.capture._recorder import Recorder
from asgitrace.cli._server import running_server

TIMEOUT = 30.0
"""Upper bound for any wait; a healthy run of the whole file takes a few seconds."""


class Arrivals:
    """An ``on_trace`` callback that lets a test await finished traces (no sleeping).

    With ``keep=False`` it keeps a summary of each trace instead of the trace, so that
    memory checks see only what asgitrace itself holds on to.
    """

    def __init__(self, *, keep: bool = True) -> None:
        self.traces: list[Any] = []
        self.keep = keep
        self._changed = asyncio.Event()

    def __call__(self, trace: Trace) -> None:
        if self.keep:
            self.traces.append(trace)
        else:
            cancelled = any(e.get("outcome") == "cancelled" for e in trace.of_kind("task_done"))
            self.traces.append((trace.query, trace.outcome, trace.status, cancelled))
        self._changed.set()

    async def wait_for(self, count: int) -> list[Any]:
        async def enough() -> None:
            while len(self.traces) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(enough(), TIMEOUT)
        return self.traces


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/wait")
    async def wait(n: int) -> dict[str, int]:
        await asyncio.sleep(0.001 * (n % 5))
        return {"n": n}

    @app.get("/spawn")
    async def spawn(n: int) -> dict[str, Any]:
        async def child(i: int) -> str:
            await asyncio.sleep(0)
            await asyncio.sleep(0.001 * (i % 2))
            return f"{n}.{i}"

        tasks = [asyncio.create_task(child(i), name=f"child-{n}-{i}") for i in range(3)]
        return {"n": n, "children": await asyncio.gather(*tasks)}

    @app.post("/json")
    async def echo(n: int, payload: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"n": n, "payload": payload}

    @app.get("/stream")
    async def stream(n: int) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for part in ("a", "b", str(n)):
                await asyncio.sleep(0)
                yield part.encode()

        return StreamingResponse(chunks())

    @app.get("/sync")
    def sync(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/missing")
    async def missing(n: int) -> None:
        await asyncio.sleep(0)
        raise HTTPException(404, detail=str(n))

    @app.get("/endless")
    async def endless(n: int, sse: bool = False) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            yield f"data: {n}\n\n" if sse else f"{n}\n"
            await asyncio.Event().wait()  # only a client disconnect ends this stream
            yield "never"  # pragma: no cover

        return StreamingResponse(events(), media_type="text/event-stream" if sse else None)

    return app


ENDPOINTS = ["wait", "spawn", "json", "stream", "sync", "missing"]


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


async def exchange(url: str, method: str, target: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request on its own connection; (status, body) once the server closes it."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    headers, _, payload = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers.lower():
        payload = dechunk(payload)
    return int(headers.split(b" ", 2)[1]), payload


async def request_number(url: str, n: int) -> tuple[int, int, bytes]:
    endpoint = ENDPOINTS[n % len(ENDPOINTS)]
    method = "POST" if endpoint == "json" else "GET"
    body = f'{{"marker": "m{n}"}}'.encode() if endpoint == "json" else b""
    status, payload = await exchange(url, method, f"/{endpoint}?n={n}", body)
    return n, status, payload


def owned_task_ids(trace: Trace) -> set[int]:
    return {trace.task.id} | {e.task.id for e in trace.of_kind("spawned")}


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    caplog.set_level(logging.WARNING)
    return caplog.records


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_thousand_concurrent_requests_get_exactly_their_own_trace(
    loop_kind: str, errors: list[logging.LogRecord]
) -> None:
    count = 1000

    async def main() -> tuple[list[tuple[int, int, bytes]], list[Trace]]:
        arrivals = Arrivals()
        tracer = Tracer(max_traces=2 * count, on_trace=arrivals)
        app = instrument(build_app(), tracer=tracer)
        async with running_server(app, log_config=None, backlog=2 * count) as url:
            results = await asyncio.wait_for(
                asyncio.gather(*(request_number(url, n) for n in range(count))), TIMEOUT
            )
            return results, await arrivals.wait_for(count)

    loop = new_loop(loop_kind)
    try:
        results, traces = loop.run_until_complete(main())
    finally:
        loop.close()

    # Every client got its own answer.
    for n, status, payload in results:
        endpoint = ENDPOINTS[n % len(ENDPOINTS)]
        assert status == (404 if endpoint == "missing" else 200), (n, status, payload)
        assert str(n).encode() in payload, (n, payload)
        if endpoint == "json":
            assert f'"m{n}"'.encode() in payload

    # Every request has exactly one trace.
    assert len(traces) == count
    numbers = Counter(int(t.query.removeprefix("n=")) for t in traces)
    assert numbers == Counter(range(count))

    # Every trace holds only its own events and tasks.
    seen_tasks: set[int] = set()
    for trace in traces:
        n = int(trace.query.removeprefix("n="))
        assert trace.path == f"/{ENDPOINTS[n % len(ENDPOINTS)]}"
        owned = owned_task_ids(trace)
        assert not owned & seen_tasks, f"a task of request {n} appears in another trace"
        seen_tasks |= owned
        foreign = [e for e in trace.events if e.task.id not in owned and e.get("thread") is None]
        assert foreign == [], (n, foreign)
        names = {e.task.name for e in trace.events}
        assert {name for name in names if name.startswith("child-")} == (
            {f"child-{n}-{i}" for i in range(3)} if trace.path == "/spawn" else set()
        )
        assert trace.outcome == "completed"
        assert trace.status == (404 if trace.path == "/missing" else 200)
        assert trace.dropped == 0

    # Nothing was logged as an error (asgitrace's own failures included).
    assert [r.getMessage() for r in errors if r.levelno >= logging.ERROR] == []


async def disconnect_after_first_chunk(url: str, n: int) -> None:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        sse = "&sse=true" if n % 2 else ""
        writer.write(f"GET /endless?n={n}{sse} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        await reader.readuntil(f"{n}\n".encode())  # the first chunk has arrived
    finally:
        writer.transport.abort()  # the client goes away mid-response, without goodbye


def live(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def test_cancellation_storms_leave_no_pending_tasks_and_no_growing_memory(
    errors: list[logging.LogRecord],
) -> None:
    storms, per_storm = 4, 150
    arrivals = Arrivals(keep=False)
    tracer = Tracer(max_traces=50, on_trace=arrivals)
    app = instrument(build_app(), tracer=tracer)
    sizes: list[tuple[int, int, int, int]] = []

    gc.collect()
    before = (live(Stepper), live(Recorder))  # what earlier tests may have left behind
    async with running_server(app, log_config=None) as url:
        baseline = asyncio.all_tasks()
        for storm in range(storms):
            numbers = range(storm * per_storm, (storm + 1) * per_storm)
            await asyncio.wait_for(
                asyncio.gather(*(disconnect_after_first_chunk(url, n) for n in numbers)),
                TIMEOUT,
            )
            summaries = await arrivals.wait_for((storm + 1) * per_storm)
            # Whatever the storm started finishes: wait for it (bounded), then check.
            leftover = asyncio.all_tasks() - baseline - {asyncio.current_task()}
            if leftover:
                await asyncio.wait(leftover, timeout=TIMEOUT)
            assert [t for t in leftover if not t.done()] == []
            gc.collect()
            sizes.append((live(Stepper), live(Recorder), live(asyncio.Task), len(gc.get_objects())))

    assert len(summaries) == storms * per_storm
    numbers = sorted(int(query.split("&")[0].removeprefix("n=")) for query, *_ in summaries)
    assert numbers == list(range(storms * per_storm))
    assert {(outcome, status) for _, outcome, status, _ in summaries} == {("disconnected", 200)}
    # Each client's departure cancelled the task streaming its response, under tracing.
    assert all(cancelled for *_, cancelled in summaries)
    # No stepper or recorder outlives its request; tasks do not accumulate; the object
    # count settles once the ring of stored traces is full (after the first storm).
    assert all(s <= b for size in sizes for s, b in zip(size[:2], before, strict=True)), (
        before,
        sizes,
    )
    assert sizes[-1][2] <= sizes[1][2], sizes
    assert sizes[-1][3] - sizes[1][3] < 500, sizes
    assert [r.getMessage() for r in errors if r.levelno >= logging.ERROR] == []
