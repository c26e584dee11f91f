"""The middleware, streaming, WSGI and TestClient patterns of Starlette's and FastAPI's docs,
traced, under blockbuster, with unclosed-resource warnings as errors (issue 16).

Starlette's own suite, with each app wrapped by ``instrument``, once left anyio memory
streams of ``BaseHTTPMiddleware`` unclosed: each test here ends with a garbage collection
so that such a stream would be reported (as an unraisable ``ResourceWarning``) inside the
test that leaked it.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from asgitrace import Tracer, instrument

with warnings.catch_warnings():
    # Starlette 1.10 asks for httpx2 under its TestClient (a UserWarning); httpx still works.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


@pytest.fixture(autouse=True)
def _collect_in_the_test() -> Iterator[None]:
    yield
    gc.collect()  # an unclosed stream warns here, attributed to this test


class AddHeader:
    """A pure ASGI middleware, as Starlette's docs write one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-pure", b"1"))
            await send(message)

        await self.app(scope, receive, send_with_header)


class Timing(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-base"] = "1"
        return response


def build_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(Timing)
    app.add_middleware(AddHeader)
    done: list[str] = []

    @app.middleware("http")
    async def process_time(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-http"] = "1"
        return response

    async def session() -> AsyncIterator[str]:
        yield "db"
        done.append("closed")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"a", b"b", b"c"):
                await asyncio.sleep(0)
                yield part

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/items/{item_id}")
    async def item(item_id: int, db: str = Depends(session)) -> dict[str, Any]:
        return {"item_id": item_id, "db": db}

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(done.append, "background")
        return {"ok": True}

    @app.get("/sync")
    def sync_endpoint() -> dict[str, bool]:
        return {"sync": True}

    def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"from wsgi"]

    with warnings.catch_warnings():
        # FastAPI's docs mount WSGI apps this way; Starlette 1.10 points to a2wsgi instead.
        warnings.simplefilter("ignore", UserWarning)
        from fastapi.middleware.wsgi import WSGIMiddleware

        app.mount("/wsgi", WSGIMiddleware(wsgi))
    app.state.done = done
    return app


CASES = [
    ("/stream", b"abc"),
    ("/items/3", b'{"item_id":3,"db":"db"}'),
    ("/items/foo", None),  # a 422
    ("/background", b'{"ok":true}'),
    ("/sync", b'{"sync":true}'),
    ("/wsgi/", b"from wsgi"),
]


def _same(traced: httpx.Response | Any, plain: httpx.Response | Any) -> None:
    assert (traced.status_code, traced.content) == (plain.status_code, plain.content)
    for header in ("x-pure", "x-base", "x-http"):
        assert traced.headers.get(header) == plain.headers.get(header)


async def test_doc_patterns_answer_as_untraced_in_process() -> None:
    tracer = Tracer()
    plain_app, traced_app = build_app(), build_app()
    traced = instrument(traced_app, tracer=tracer)
    for path, body in CASES:
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=plain_app), base_url="http://t"
            ) as a,
            httpx.AsyncClient(transport=httpx.ASGITransport(app=traced), base_url="http://t") as b,
        ):
            plain, got = await a.get(path), await b.get(path)
        _same(got, plain)
        if body is not None:
            assert got.content == body
    assert len(tracer.traces) == len(CASES)
    assert traced_app.state.done == plain_app.state.done


def test_doc_patterns_answer_as_untraced_through_testclient() -> None:
    tracer = Tracer()
    plain_app, traced_app = build_app(), build_app()
    with TestClient(plain_app) as a, TestClient(instrument(traced_app, tracer=tracer)) as b:
        for path, _ in CASES:
            _same(b.get(path), a.get(path))
    assert len(tracer.traces) == len(CASES)
    assert traced_app.state.done == plain_app.state.done


async def test_a_client_gone_mid_stream_through_base_http_middleware_leaks_no_stream() -> None:
    tracer = Tracer()
    app = instrument(build_app(), tracer=tracer)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/stream",
        "raw_path": b"/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # pragma: no cover - cancelled with the app
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("body") == b"a":
            raise OSError("client went away")

    with pytest.raises(OSError, match="client went away"):
        await app(scope, receive, send)
    assert [m["type"] for m in sent][:2] == ["http.response.start", "http.response.body"]
    assert tracer.last is not None
