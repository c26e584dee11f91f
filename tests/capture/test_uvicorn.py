"""Capture through a real uvicorn server on 127.0.0.1 (HTTP/1.1 and WebSocket)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from textwrap import dedent
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from fastapi.responses import StreamingResponse
from websockets.asyncio.client import connect

from asgitrace import Trace, Tracer, instrument
from asgitrace.cli._server import running_server

DELAY = 0.02
BODY_MARKER = "BODY-MARKER-uvicorn-41c8"
TIMEOUT = 10.0
"""Upper bound for waiting on the server; a healthy run takes milliseconds."""


class Arrivals:
    """An ``on_trace`` callback that lets a test await finished traces (no sleeping)."""

    def __init__(self) -> None:
        self.traces: list[Trace] = []
        self._arrived = asyncio.Event()

    def __call__(self, trace: Trace) -> None:
        self.traces.append(trace)
        self._arrived.set()

    async def wait_for(self, count: int) -> list[Trace]:
        async def enough() -> None:
            while len(self.traces) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(enough(), TIMEOUT)
        return self.traces


def build_app(never: asyncio.Event | None = None) -> FastAPI:
    app = FastAPI()

    @app.get("/wait")
    async def wait_endpoint() -> dict[str, str]:
        await asyncio.sleep(DELAY)
        return {"message": "Done waiting"}

    @app.post("/items")
    async def create_item(item: dict[str, Any]) -> dict[str, int]:
        return {"keys": len(item)}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for size in (3, 5, 7):
                yield b"s" * size

        return StreamingResponse(chunks())

    @app.get("/endless")
    async def endless() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            assert never is not None
            await never.wait()  # only a client disconnect ends this stream
            yield b"never"  # pragma: no cover

        return StreamingResponse(chunks())

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"echo: {text}")
        data = await websocket.receive_bytes()
        await websocket.send_bytes(data[::-1])
        await websocket.close(code=1000)

    return app


@pytest.fixture
def arrivals() -> Arrivals:
    return Arrivals()


@pytest.fixture
def tracer(arrivals: Arrivals) -> Tracer:
    return Tracer(on_trace=arrivals)


def client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, trust_env=False, timeout=TIMEOUT)


async def test_server_listens_on_loopback_with_an_ephemeral_port() -> None:
    async with running_server(build_app()) as url:
        scheme, host, port = url.split(":")
        async with client(url) as http:
            response = await http.get("/wait")

    assert (scheme, host) == ("http", "//127.0.0.1")
    assert int(port) > 0
    assert response.json() == {"message": "Done waiting"}


async def test_reference_endpoint_is_traced_through_uvicorn(
    tracer: Tracer, arrivals: Arrivals
) -> None:
    async with running_server(instrument(build_app(), tracer=tracer)) as url, client(url) as http:
        response = await http.get("/wait")
        (trace,) = await arrivals.wait_for(1)

    assert response.json() == {"message": "Done waiting"}
    assert (trace.method, trace.path, trace.route, trace.status, trace.outcome) == (
        "GET",
        "/wait",
        "/wait",
        200,
        "completed",
    )
    assert trace.events[0].get("http_version") == "1.1"
    assert dict(trace.headers)["host"] == url.removeprefix("http://")
    trace.assert_order(("received", "/wait"), ("sent", 200), ("sent", "http.response.body"))
    body = [e for e in trace.of_kind("sent") if e.get("type") == "http.response.body"]
    assert [(e.get("body_bytes"), e.get("more_body")) for e in body] == [
        (len(response.content), False)
    ]
    assert trace.duration >= DELAY * 0.9


async def test_json_post_through_uvicorn_records_only_the_body_size(
    tracer: Tracer, arrivals: Arrivals
) -> None:
    content = json.dumps({"marker": BODY_MARKER, "a": [1, 2, 3]}).encode()

    async with running_server(instrument(build_app(), tracer=tracer)) as url, client(url) as http:
        response = await http.post(
            "/items", content=content, headers={"content-type": "application/json"}
        )
        (trace,) = await arrivals.wait_for(1)

    assert response.json() == {"keys": 2}
    requests = [e for e in trace.of_kind("received") if e.get("type") == "http.request"]
    assert sum(e.get("body_bytes") for e in requests) == len(content)
    assert requests[-1].get("more_body") is False
    assert BODY_MARKER not in repr(trace.to_dict())


async def test_streaming_response_through_uvicorn_records_every_chunk(
    tracer: Tracer, arrivals: Arrivals
) -> None:
    async with running_server(instrument(build_app(), tracer=tracer)) as url, client(url) as http:
        response = await http.get("/stream")
        (trace,) = await arrivals.wait_for(1)

    assert response.content == b"s" * 15
    body = [e for e in trace.of_kind("sent") if e.get("type") == "http.response.body"]
    assert [(e.get("body_bytes"), e.get("more_body")) for e in body] == [
        (3, True),
        (5, True),
        (7, True),
        (0, False),
    ]
    assert trace.outcome == "completed"


async def test_client_leaving_mid_stream_is_recorded_as_disconnected(
    tracer: Tracer, arrivals: Arrivals
) -> None:
    never = asyncio.Event()
    app = instrument(build_app(never), tracer=tracer)

    async with running_server(app, timeout_graceful_shutdown=TIMEOUT) as url, client(url) as http:
        async with http.stream("GET", "/endless") as response:
            first = await anext(response.aiter_raw())
        # Leaving the block closed the half-read response, hence the connection.
        (trace,) = await arrivals.wait_for(1)

    assert first == b"first"
    assert (trace.status, trace.outcome) == (200, "disconnected")
    trace.assert_order(("sent", "http.response.body"), ("disconnected", "http.disconnect"))
    body = [e for e in trace.of_kind("sent") if e.get("type") == "http.response.body"]
    assert [(e.get("body_bytes"), e.get("more_body")) for e in body] == [(5, True)]


async def test_websocket_echo_is_traced_with_message_sizes(
    tracer: Tracer, arrivals: Arrivals
) -> None:
    async with running_server(instrument(build_app(), tracer=tracer)) as url:
        async with connect(url.replace("http://", "ws://") + "/ws") as ws:
            await ws.send("hello")
            text = await ws.recv()
            await ws.send(b"\x01\x02\x03\x04")
            data = await ws.recv()
        (trace,) = await arrivals.wait_for(1)

    assert (text, data) == ("echo: hello", b"\x04\x03\x02\x01")
    assert (trace.type, trace.method, trace.path, trace.status, trace.outcome) == (
        "websocket",
        None,
        "/ws",
        101,
        "completed",
    )
    messages = [
        (e.kind.value, dict(e.fields)) for e in trace.events if e.kind in ("received", "sent")
    ]
    assert messages[1:] == [
        ("received", {"type": "websocket.connect"}),
        ("sent", {"type": "websocket.accept", "status": 101}),
        ("received", {"type": "websocket.receive", "text_chars": 5}),
        ("sent", {"type": "websocket.send", "text_chars": 11}),
        ("received", {"type": "websocket.receive", "body_bytes": 4}),
        ("sent", {"type": "websocket.send", "body_bytes": 4}),
        ("sent", {"type": "websocket.close", "code": 1000}),
    ]


async def test_concurrent_requests_get_one_trace_each(tracer: Tracer, arrivals: Arrivals) -> None:
    async with running_server(instrument(build_app(), tracer=tracer)) as url, client(url) as http:
        responses = await asyncio.gather(*(http.get("/wait") for _ in range(3)))
        traces = await arrivals.wait_for(3)

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len({t.id for t in traces}) == 3
    assert len({t.task.id for t in traces}) == 3
    assert {t.outcome for t in traces} == {"completed"}


async def test_server_that_does_not_start_in_time_raises_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        async with running_server(build_app(), startup_timeout=0):
            pytest.fail("the block must not run")  # pragma: no cover


PORT_IN_USE = dedent(
    """\
    import asyncio, socket
    from asgitrace.cli._server import running_server

    async def app(scope, receive, send):
        pass

    async def main():
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            try:
                async with running_server(app, port=taken.getsockname()[1]):
                    print("started")
            except OSError as exc:
                print("OSError:", exc)
            except BaseException as exc:
                print("unexpected:", type(exc).__name__)

    asyncio.run(main())
    """
)


def test_port_already_in_use_raises_os_error() -> None:
    # In a child process: the failure mode ends the whole event loop, not only the test.
    done = subprocess.run(
        [sys.executable, "-c", PORT_IN_USE], capture_output=True, text=True, timeout=60
    )

    assert done.stdout.startswith("OSError: could not start a server on 127.0.0.1:")


async def test_an_app_whose_startup_fails_is_not_mistaken_for_a_busy_port() -> None:
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        raise RuntimeError("database unreachable")
        yield  # pragma: no cover

    with pytest.raises(RuntimeError, match="the app failed to start"):
        async with running_server(FastAPI(lifespan=lifespan), lifespan="on"):
            pass  # pragma: no cover
