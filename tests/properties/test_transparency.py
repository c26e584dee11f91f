"""Differential transparency: the same requests, once traced and once untraced, look the same.

FastAPI's and Starlette's own behaviour is the oracle. Each test builds the same app
twice or wraps one app, drives both with the same generated requests (hypothesis, with
a fixed seed) and compares everything a client or the app can observe: status, headers,
body bytes, the exception raised, and the app's side effects (dependencies with
``yield``, background tasks, middleware, context variables, task identities).

The untraced run always gets an event loop that asgitrace never touched, so the task
hook of a traced run cannot leak into the oracle.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import enum
import gzip
import hashlib
import json
import re
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from fastapi import (
    BackgroundTasks,
    Body,
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Request,
    UploadFile,
    WebSocket,
)
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from hypothesis import given, strategies as st
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from asgitrace import Trace, TraceMiddleware, Tracer, instrument
from asgitrace.cli._server import running_server

Outcome = tuple[Any, ...]
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

# --- The app under test: one route per pattern the issue lists ---------------------------------

REQUEST_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("request_tag", default="unset")
BOUNDARY = "asgitrace-fixed-boundary"


class Teapot(Exception):
    """An app exception that has its own exception handler."""


@dataclass
class Built:
    """One app instance and the side effects its handlers record."""

    app: Any
    log: list[str] = field(default_factory=list)
    tracer: Tracer | None = None


async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Hand-written ASGI behaviours frameworks do not produce (mounted at /raw)."""
    path = scope["path"]
    if path.endswith("/early"):  # answer before reading the body, never read it
        await send({"type": "http.response.start", "status": 202, "headers": [(b"x-e", b"1")]})
        await send({"type": "http.response.body", "body": b"early"})
    elif path.endswith("/after"):  # the response is complete, then the app fails
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        raise LookupError("failed after the response")
    elif path.endswith("/silent"):  # returns without any response
        await receive()
    else:  # reads the whole body in whatever chunks arrive, answers with its digest
        digest = hashlib.sha256()
        chunks = 0
        while True:
            message = await receive()
            digest.update(message.get("body", b""))
            chunks += 1
            if not message.get("more_body", False):
                break
        body = f"{chunks}:{digest.hexdigest()}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-r", b"2")]})
        await send({"type": "http.response.body", "body": body[:10], "more_body": True})
        await send({"type": "http.response.body", "body": body[10:]})


def build_app(*, base_middleware: bool) -> Built:
    built = Built(FastAPI())
    app: FastAPI = built.app
    log = built.log

    @app.exception_handler(Teapot)
    async def teapot_handler(request: Request, exc: Teapot) -> JSONResponse:
        log.append(f"handled {exc}")
        return JSONResponse({"teapot": str(exc)}, status_code=418, headers={"x-teapot": "1"})

    if base_middleware:

        @app.middleware("http")
        async def tag_response(request: Request, call_next: Any) -> Response:
            log.append(f"middleware in {request.url.path}")
            response: Response = await call_next(request)
            response.headers["x-middleware"] = "seen"
            log.append(f"middleware out {response.status_code}")
            return response

    async def open_db() -> AsyncIterator[str]:
        log.append("db open")
        try:
            yield "db"
        except HTTPException as exc:
            log.append(f"db saw {exc.status_code}")
            raise
        finally:
            log.append("db close")

    def sync_dependency() -> Iterator[str]:
        log.append("sync dependency open")
        yield "sync"
        log.append("sync dependency close")

    @app.get("/items/{item_id}")
    async def read_item(
        item_id: int, q: str | None = None, db: str = Depends(open_db)
    ) -> dict[str, Any]:
        await asyncio.sleep(0)
        if item_id < 0:
            raise HTTPException(404, detail=f"no item {item_id}", headers={"x-missing": "yes"})
        return {"item_id": item_id, "q": q, "db": db}

    @app.post("/json")
    async def echo_json(payload: Any = Body(None)) -> dict[str, Any]:  # noqa: B008
        await asyncio.sleep(0)
        return {"payload": payload}

    @app.post("/form")
    async def form(request: Request) -> dict[str, Any]:
        body = await request.body()
        return {"pairs": parse_qsl(body.decode("latin-1"), keep_blank_values=True)}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        return {"size": size, "sha256": digest.hexdigest(), "type": request.headers["content-type"]}

    @app.post("/early")
    async def early() -> dict[str, str]:
        return {"read": "nothing"}

    @app.get("/stream")
    async def stream(n: int = 3, size: int = 4) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(n):
                await asyncio.sleep(0)
                yield bytes([65 + i % 26]) * size

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @app.get("/sse")
    async def server_sent_events(n: int = 3) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            for i in range(n):
                await asyncio.sleep(0)
                yield f"id: {i}\ndata: {{'i': {i}}}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/raise/{kind}")
    async def fail(kind: str, db: str = Depends(open_db)) -> dict[str, str]:
        await asyncio.sleep(0)
        if kind == "http":
            raise HTTPException(401, detail="who are you", headers={"WWW-Authenticate": "Bearer"})
        if kind == "teapot":
            raise Teapot("short and stout")
        if kind == "runtime":
            raise RuntimeError("boom")
        return {"kind": kind}

    @app.get("/validate")
    async def validate(n: int, flag: bool = False) -> dict[str, Any]:
        return {"n": n, "flag": flag}

    @app.post("/background")
    async def background(value: str, tasks: BackgroundTasks) -> dict[str, str]:
        async def later(text: str) -> None:
            await asyncio.sleep(0)
            log.append(f"async background {text}")

        tasks.add_task(log.append, f"background {value}")
        tasks.add_task(later, value)
        return {"queued": value}

    @app.get("/sync")
    def sync_endpoint(x: int = 0, dep: str = Depends(sync_dependency)) -> dict[str, Any]:
        return {"x": x, "worker": threading.current_thread() is not threading.main_thread()}

    @app.get("/headers")
    async def headers(request: Request) -> list[list[str]]:
        return [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw]

    @app.get("/redirect")
    async def redirect(to: str = "/items/1") -> RedirectResponse:
        return RedirectResponse(to, status_code=307)

    @app.get("/tasks")
    async def tasks(request: Request) -> dict[str, Any]:
        return await observe_tasks(request)

    sub = FastAPI()

    @sub.get("/hello/{name}")
    async def hello(name: str, request: Request) -> dict[str, str]:
        return {"hello": name, "root_path": request.scope.get("root_path", "")}

    async def star(request: Request) -> PlainTextResponse:
        await asyncio.sleep(0)
        return PlainTextResponse(f"star {request.path_params['name']}")

    app.mount("/sub", sub)
    app.mount("/star", Starlette(routes=[Route("/{name}", star)]))
    app.mount("/raw", raw_asgi)

    @app.websocket("/ws")
    async def ws_echo(websocket: WebSocket) -> None:
        await echo_websocket(websocket, log)

    return built


async def observe_tasks(request: Request) -> dict[str, Any]:
    """What the app sees of its own task, its children, context variables and cancellation."""
    REQUEST_TAG.set("set by the endpoint")
    me = asyncio.current_task()
    assert me is not None
    seen: dict[str, Any] = {}

    async def child(name: str) -> str:
        await asyncio.sleep(0)
        task = asyncio.current_task()
        assert task is not None
        seen[name] = (REQUEST_TAG.get(), task.get_name(), task is not me)
        REQUEST_TAG.set("set by a child")  # a child's context is a copy
        return name

    named = asyncio.create_task(child("named"), name="named-child")
    unnamed = asyncio.create_task(child("unnamed"))
    results = await asyncio.gather(named, unnamed)
    waited = await asyncio.wait_for(child("wait_for"), timeout=5)

    async def hang() -> None:
        await asyncio.Event().wait()

    victim = asyncio.create_task(hang())
    await asyncio.sleep(0)
    victim.cancel("stop now")
    try:
        await victim
    except asyncio.CancelledError as exc:
        cancel_args = list(exc.args)
    timed_out = False
    try:
        await asyncio.wait_for(hang(), timeout=0.001)
    except TimeoutError:
        timed_out = True
    named_seen = seen["named"]
    unnamed_seen = seen["unnamed"]
    return {
        "results": [*results, waited],
        "named": [named_seen[0], named_seen[1], named_seen[2]],
        "unnamed": [unnamed_seen[0], bool(re.fullmatch(r"Task-\d+", unnamed_seen[1]))],
        "tag_after_children": REQUEST_TAG.get(),
        "same_task": asyncio.current_task() is me,
        "cancel_args": cancel_args,
        "victim_cancelled": victim.cancelled(),
        "timed_out": timed_out,
        "coro_name": getattr(me.get_coro(), "__name__", None),
        "is_coroutine": asyncio.iscoroutine(me.get_coro()),
        "path": request.url.path,
    }


async def echo_websocket(websocket: WebSocket, log: list[str]) -> None:
    first = websocket.query_params.get("first", "accept")
    if first == "close":  # refuse before accepting
        log.append("refused")
        await websocket.close(code=4403)
        return
    await websocket.accept(subprotocol=websocket.query_params.get("subprotocol"))
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                log.append(f"client left {message.get('code')}")
                return
            if message.get("text") is not None:
                text = message["text"]
                if text == "close":
                    await websocket.close(code=4000, reason="asked to")
                    log.append("closed")
                    return
                if text == "raise":
                    raise ValueError("websocket handler failed")
                await websocket.send_text(f"echo {text}")
            else:
                await websocket.send_bytes(bytes(reversed(message.get("bytes") or b"")))
    except WebSocketDisconnect:  # pragma: no cover - receive() returns the message instead
        log.append("disconnect raised")


@cache
def oracle_and_traced(base_middleware: bool) -> tuple[Built, Built]:
    """(untraced, traced with add_middleware): two instances of the same app."""
    untraced = build_app(base_middleware=base_middleware)
    traced = build_app(base_middleware=base_middleware)
    traced.tracer = Tracer(max_traces=10_000)
    traced.app.add_middleware(TraceMiddleware, tracer=traced.tracer)
    return untraced, traced


# --- Requests and how outcomes are compared -----------------------------------------------------


@dataclass(frozen=True)
class Req:
    method: str
    url: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes | None = None
    chunks: tuple[bytes, ...] | None = None

    def content(self) -> Any:
        if self.chunks is None:
            return self.body

        async def stream() -> AsyncIterator[bytes]:
            for chunk in self.chunks or ():
                yield chunk

        return stream()


def _pattern(seed: int, size: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def _multipart(fields: list[tuple[str, str]], filename: str, data: bytes) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    ]
    parts.append(
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _chunked(data: bytes, sizes: list[int]) -> tuple[bytes, ...]:
    out = []
    rest = data
    for size in sizes:
        if not rest:
            break
        out.append(rest[:size])
        rest = rest[size:]
    if rest:
        out.append(rest)
    return tuple(out)


header_names = st.sampled_from(["x-a", "x-b", "X-Mixed-Case", "x-dup", "x-dup", "accept"])
header_values = st.binary(max_size=24).map(
    lambda b: bytes(c if 0x21 <= c <= 0x7E or c >= 0x80 else 0x20 for c in b).strip()
)
extra_headers = st.lists(st.tuples(header_names.map(str.encode), header_values), max_size=5)
texts = st.text(max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=10,
)
body_sizes = st.sampled_from([0, 1, 100, 65_536, 65_537, 300_000])
chunk_sizes = st.lists(st.integers(1, 100_000), max_size=4)


@st.composite
def requests(draw: st.DrawFn) -> Req:
    kind = draw(
        st.sampled_from(
            [
                "item",
                "json",
                "form",
                "upload",
                "early",
                "stream",
                "sse",
                "raise",
                "validate",
                "background",
                "sync",
                "headers",
                "redirect",
                "tasks",
                "mounted",
                "raw",
                "missing",
                "wrong method",
            ]
        )
    )
    headers = tuple(draw(extra_headers))
    if kind == "item":
        item_id = draw(st.integers(-5, 10**6) | st.text(max_size=5))
        query = draw(st.none() | texts)
        url = f"/items/{item_id}" + ("" if query is None else "?" + urlencode({"q": query}))
        return Req("GET", url, headers)
    if kind == "json":
        body = draw(json_values.map(lambda v: json.dumps(v).encode()))
        broken = draw(st.booleans())
        return Req(
            "POST",
            "/json",
            ((b"content-type", b"application/json"), *headers),
            body[:-1] if broken and body else body,
        )
    if kind == "form":
        pairs = draw(st.lists(st.tuples(texts, texts), max_size=5))
        return Req(
            "POST",
            "/form",
            ((b"content-type", b"application/x-www-form-urlencoded"), *headers),
            urlencode(pairs).encode(),
        )
    if kind == "upload":
        data = _pattern(draw(st.integers(0, 99)), draw(body_sizes))
        body = _multipart(
            draw(st.lists(st.tuples(st.sampled_from("abc"), texts), max_size=3)),
            draw(st.sampled_from(["a.bin", "é.txt"])),
            data,
        )
        content_type = f"multipart/form-data; boundary={BOUNDARY}".encode()
        return Req(
            "POST",
            "/upload",
            ((b"content-type", content_type), *headers),
            chunks=_chunked(body, draw(chunk_sizes)),
        )
    if kind == "early":
        return Req("POST", "/early", headers, _pattern(1, draw(body_sizes)))
    if kind == "stream":
        n, size = draw(st.integers(0, 6)), draw(st.integers(0, 5000))
        return Req("GET", f"/stream?n={n}&size={size}", headers)
    if kind == "sse":
        return Req("GET", f"/sse?n={draw(st.integers(0, 5))}", headers)
    if kind == "raise":
        which = draw(st.sampled_from(["http", "teapot", "runtime", "none"]))
        return Req("GET", f"/raise/{which}", headers)
    if kind == "validate":
        n = draw(st.integers() | st.sampled_from(["x", "", "1.5"]))
        flag = draw(st.sampled_from(["true", "0", "maybe"]))
        return Req("GET", f"/validate?n={n}&flag={flag}", headers)
    if kind == "background":
        return Req("POST", "/background?" + urlencode({"value": draw(texts)}), headers)
    if kind == "sync":
        return Req("GET", f"/sync?x={draw(st.integers(-9, 9))}", headers)
    if kind == "headers":
        return Req("GET", "/headers", headers)
    if kind == "redirect":
        return Req("GET", "/redirect?" + urlencode({"to": draw(texts) or "/"}), headers)
    if kind == "tasks":
        return Req("GET", "/tasks", headers)
    if kind == "mounted":
        name = draw(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True))
        return Req("GET", draw(st.sampled_from(["/sub/hello/", "/star/"])) + name, headers)
    if kind == "raw":
        which = draw(st.sampled_from(["early", "after", "silent", "digest"]))
        body = _pattern(2, draw(body_sizes))
        return Req("POST", f"/raw/{which}", headers, chunks=_chunked(body, draw(chunk_sizes)))
    if kind == "missing":
        return Req("GET", "/nowhere/" + draw(st.from_regex(r"[a-z]{0,6}", fullmatch=True)))
    return Req("DELETE", "/items/1", headers)


def outcome_of(response: httpx.Response) -> Outcome:
    return ("response", response.status_code, response.headers.multi_items(), response.content)


def raised(exc: BaseException) -> Outcome:
    return ("raised", type(exc).__qualname__, str(exc))


async def send_all(app: Any, reqs: list[Req]) -> list[Outcome]:
    transport = httpx.ASGITransport(app=app)
    outcomes: list[Outcome] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for req in reqs:
            try:
                response = await client.request(
                    req.method, req.url, headers=list(req.headers), content=req.content()
                )
            except Exception as exc:
                outcomes.append(raised(exc))
            else:
                outcomes.append(outcome_of(response))
    return outcomes


def run(app: Any, reqs: list[Req]) -> list[Outcome]:
    """Each run on a fresh event loop: the oracle's loop never saw asgitrace."""
    return asyncio.run(send_all(app, reqs))


def reaches_the_app(req: Req) -> bool:
    """Whether httpx sends *req*: it refuses a URL with a control character (a generated
    item id such as ``"\\x1f"``) before sending, so that request has no trace."""
    try:
        httpx.URL(f"http://testserver{req.url}")
    except httpx.InvalidURL:
        return False
    return True


def traced_paths(reqs: list[Req]) -> list[str]:
    return [r.url.split("?")[0] for r in reqs if reaches_the_app(r)]


def assert_one_trace_per_request(tracer: Tracer, reqs: list[Req], before: int) -> None:
    traces = tracer.traces[before:]
    assert [t.path for t in traces] == traced_paths(reqs)
    assert all(t.outcome in {"completed", "failed", "disconnected"} for t in traces)


# --- Differential tests ------------------------------------------------------------------------


@given(reqs=st.lists(requests(), min_size=1, max_size=4), base_middleware=st.booleans())
def test_generated_requests_are_answered_identically_with_tracing_outside_and_inside(
    reqs: list[Req], base_middleware: bool
) -> None:
    """Traced by `instrument` (outermost) and by `add_middleware` (inside FastAPI's error
    middleware): same responses, same exceptions, same side effects as untraced."""
    oracle, inside = oracle_and_traced(base_middleware)
    tracer = Tracer(max_traces=10_000)
    outside = instrument(oracle.app, tracer=tracer)

    oracle.log.clear()
    expected = run(oracle.app, reqs)
    expected_log = list(oracle.log)

    oracle.log.clear()
    assert run(outside, reqs) == expected
    assert oracle.log == expected_log
    assert_one_trace_per_request(tracer, reqs, 0)

    inside.log.clear()
    assert inside.tracer is not None
    before = len(inside.tracer.traces)
    assert run(inside.app, reqs) == expected
    assert inside.log == expected_log
    assert_one_trace_per_request(inside.tracer, reqs, before)


@given(reqs=st.lists(requests(), min_size=2, max_size=6))
def test_generated_requests_sent_concurrently_get_the_same_answers(reqs: list[Req]) -> None:
    """Concurrency must not make traced requests see each other's state."""
    oracle, _ = oracle_and_traced(False)
    tracer = Tracer()

    async def concurrently(app: Any) -> list[Outcome]:
        return list(await asyncio.gather(*(send_all(app, [r]) for r in reqs)))

    expected = asyncio.run(concurrently(oracle.app))
    assert asyncio.run(concurrently(instrument(oracle.app, tracer=tracer))) == expected
    assert sorted(t.path for t in tracer.traces) == sorted(traced_paths(reqs))


def test_task_identity_context_and_cancellation_are_those_of_the_untraced_app() -> None:
    """A fixed check of what `/tasks` reports, so a regression names the broken property."""
    oracle, inside = oracle_and_traced(False)
    [expected] = run(oracle.app, [Req("GET", "/tasks")])
    body = json.loads(expected[3])

    assert body["named"] == ["set by the endpoint", "named-child", True]
    assert body["unnamed"] == ["set by the endpoint", True]
    # 3.12's wait_for runs the coroutine in the caller's task (and context), 3.11's in a task.
    in_caller = sys.version_info >= (3, 12)
    assert body["tag_after_children"] == ("set by a child" if in_caller else "set by the endpoint")
    assert body["cancel_args"] == ["stop now"]
    assert (body["same_task"], body["victim_cancelled"], body["timed_out"]) == (True, True, True)
    assert run(instrument(oracle.app), [Req("GET", "/tasks")]) == [expected]
    assert run(inside.app, [Req("GET", "/tasks")]) == [expected]


# --- WebSockets: a scripted client, the sent messages compared one by one -----------------------

ws_client_messages = st.lists(
    st.one_of(
        st.text(max_size=10).map(lambda t: {"type": "websocket.receive", "text": t}),
        st.binary(max_size=10).map(lambda b: {"type": "websocket.receive", "bytes": b}),
        st.sampled_from(
            [
                {"type": "websocket.receive", "text": "close"},
                {"type": "websocket.receive", "text": "raise"},
            ]
        ),
    ),
    max_size=5,
)


async def drive_websocket(
    app: Any, query: bytes, incoming: list[dict[str, Any]], path: str = "/ws"
) -> tuple[list[dict[str, Any]], Outcome | None]:
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"testserver"), (b"sec-websocket-protocol", b"chat")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "subprotocols": ["chat"],
    }
    script = [{"type": "websocket.connect"}, *copy.deepcopy(incoming)]
    script.append({"type": "websocket.disconnect", "code": 1001})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return script.pop(0) if script else {"type": "websocket.disconnect", "code": 1006}

    async def send(message: dict[str, Any]) -> None:
        sent.append(copy.deepcopy(message))

    try:
        await app(scope, receive, send)
    except Exception as exc:
        return sent, raised(exc)
    return sent, None


@given(
    incoming=ws_client_messages,
    query=st.sampled_from([b"", b"first=close", b"subprotocol=chat"]),
)
def test_generated_websocket_sessions_send_the_same_messages(
    incoming: list[dict[str, Any]], query: bytes
) -> None:
    oracle, inside = oracle_and_traced(False)
    tracer = Tracer()

    oracle.log.clear()
    expected = asyncio.run(drive_websocket(oracle.app, query, incoming))
    expected_log = list(oracle.log)
    oracle.log.clear()

    assert asyncio.run(drive_websocket(instrument(oracle.app, tracer=tracer), query, incoming)) == (
        expected
    )
    assert oracle.log == expected_log
    inside.log.clear()
    assert asyncio.run(drive_websocket(inside.app, query, incoming)) == expected
    assert inside.log == expected_log
    [trace] = tracer.traces
    assert trace.type == "websocket"


# --- Through a real server: raw bytes on the wire ----------------------------------------------

WIRE_REQUESTS = [
    b"GET /items/3?q=x HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /items/-1 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    b'Content-Length: 9\r\n\r\n[1,"a",2]',
    b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    b"GET /stream?n=4&size=3 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /sse?n=2 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /raise/http HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /raise/teapot HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /raise/runtime HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /validate?n=x HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /sync?x=2 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /headers HTTP/1.1\r\nHost: t\r\nX-Dup: 1\r\nX-Dup: 2\r\nX-Bin: \xff\xfe\r\n\r\n",
    b"GET /star/zed HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /raw/early HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    b"DELETE /items/1 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"HEAD /items/1 HTTP/1.1\r\nHost: t\r\n\r\n",
]


async def wire_exchange(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request.replace(b"Host: t\r\n", b"Host: t\r\nConnection: close\r\n", 1))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    # The only header that differs between two runs is the server's clock.
    return re.sub(rb"\r\ndate: [^\r]*", b"", data)


async def test_responses_on_the_wire_are_byte_identical_through_uvicorn() -> None:
    oracle, _ = oracle_and_traced(False)
    tracer = Tracer()
    results = []
    for app in (oracle.app, instrument(oracle.app, tracer=tracer)):
        oracle.log.clear()
        async with running_server(app, log_config=None) as url:
            wire = [await wire_exchange(url, r) for r in WIRE_REQUESTS]
        # Read the side effects after the server's shutdown, which waits for every request
        # task: dependency teardown may still run after the client has read the response.
        results.append((wire, oracle.log[:]))

    assert results[1] == results[0]
    assert len(tracer.traces) == len(WIRE_REQUESTS)
    assert b"HTTP/1.1 418" in results[0][0][7]


# --- Starlette's and FastAPI's tutorial examples -----------------------------------------------


# The tutorial's models live at module level: FastAPI resolves annotations by name.


class ModelName(str, enum.Enum):
    alexnet = "alexnet"
    resnet = "resnet"
    lenet = "lenet"


class Item(BaseModel):
    name: str
    description: str | None = None
    price: float
    tax: float | None = None


class UserIn(BaseModel):
    username: str
    password: str
    email: str
    full_name: str | None = None


class UserOut(BaseModel):
    username: str
    email: str
    full_name: str | None = None


class UnicornException(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def fastapi_tutorial() -> tuple[Any, list[str]]:
    """First steps, path/query parameters, request body, response_model, dependencies,
    handling errors, background tasks and middleware, as the FastAPI tutorial writes them."""
    log: list[str] = []
    app = FastAPI()

    items = {"foo": "The Foo Wrestlers"}
    fake_items_db = [{"item_name": "Foo"}, {"item_name": "Bar"}, {"item_name": "Baz"}]

    @app.exception_handler(UnicornException)
    async def unicorn_exception_handler(request: Request, exc: UnicornException) -> JSONResponse:
        return JSONResponse(
            status_code=418,
            content={"message": f"Oops! {exc.name} did something. There goes a rainbow..."},
        )

    @app.middleware("http")
    async def add_process_time_header(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["X-Process-Time"] = "measured"  # the tutorial's value is a duration
        return response

    async def common_parameters(
        q: str | None = None, skip: int = 0, limit: int = 100
    ) -> dict[str, Any]:
        return {"q": q, "skip": skip, "limit": limit}

    async def get_db() -> AsyncIterator[str]:
        log.append("db opened")
        try:
            yield "db"
        finally:
            log.append("db closed")

    def write_notification(email: str, message: str = "") -> None:
        log.append(f"notification for {email}: {message}")

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"message": "Hello World"}

    @app.get("/models/{model_name}")
    async def get_model(model_name: ModelName) -> dict[str, str]:
        if model_name is ModelName.alexnet:
            return {"model_name": model_name, "message": "Deep Learning FTW!"}
        if model_name.value == "lenet":
            return {"model_name": model_name, "message": "LeCNN all the images"}
        return {"model_name": model_name, "message": "Have some residuals"}

    @app.get("/files/{file_path:path}")
    async def read_file(file_path: str) -> dict[str, str]:
        return {"file_path": file_path}

    @app.get("/items/")
    async def read_items(
        commons: dict[str, Any] = Depends(common_parameters),  # noqa: B008
    ) -> dict[str, Any]:
        return {**commons, "items": fake_items_db[commons["skip"] : commons["skip"] + 2]}

    @app.post("/items/")
    async def create_item(item: Item) -> dict[str, Any]:
        item_dict = item.model_dump()
        if item.tax is not None:
            item_dict.update({"price_with_tax": item.price + item.tax})
        return item_dict

    @app.put("/items/{item_id}")
    async def update_item(item_id: int, item: Item, q: str | None = None) -> dict[str, Any]:
        result = {"item_id": item_id, **item.model_dump()}
        if q:
            result.update({"q": q})
        return result

    @app.get("/items-header/{item_id}")
    async def read_item_header(item_id: str) -> dict[str, str]:
        if item_id not in items:
            raise HTTPException(
                status_code=404, detail="Item not found", headers={"X-Error": "There goes my error"}
            )
        return {"item": items[item_id]}

    @app.get("/unicorns/{name}")
    async def read_unicorn(name: str) -> dict[str, str]:
        if name == "yolo":
            raise UnicornException(name=name)
        return {"unicorn_name": name}

    @app.post("/user/", response_model=UserOut)
    async def create_user(user: UserIn) -> Any:
        return user

    @app.get("/db")
    async def use_db(db: str = Depends(get_db)) -> dict[str, str]:
        return {"db": db}

    @app.post("/send-notification/{email}")
    async def send_notification(email: str, background_tasks: BackgroundTasks) -> dict[str, str]:
        background_tasks.add_task(write_notification, email, message="some notification")
        return {"message": "Notification sent in the background"}

    app.add_middleware(GZipMiddleware, minimum_size=1000)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["http://localhost:8080"],
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    return app, log


FASTAPI_TUTORIAL_REQUESTS = [
    Req("GET", "/"),
    Req("GET", "/models/alexnet"),
    Req("GET", "/models/lenet"),
    Req("GET", "/models/resnet"),
    Req("GET", "/models/vgg"),
    Req("GET", "/files/home/johndoe/myfile.txt"),
    Req("GET", "/items/?skip=1&limit=10&q=x"),
    Req("GET", "/items/?skip=x"),
    Req(
        "POST",
        "/items/",
        body=b'{"name": "Foo", "price": 35.4, "tax": 3.2}',
        headers=((b"content-type", b"application/json"),),
    ),
    Req(
        "POST",
        "/items/",
        body=b'{"name": "Foo"}',
        headers=((b"content-type", b"application/json"),),
    ),
    Req(
        "PUT",
        "/items/5?q=z",
        body=b'{"name": "Bar", "price": 1}',
        headers=((b"content-type", b"application/json"),),
    ),
    Req("GET", "/items-header/foo"),
    Req("GET", "/items-header/bar"),
    Req("GET", "/unicorns/yolo"),
    Req("GET", "/unicorns/sparkle"),
    Req(
        "POST",
        "/user/",
        body=b'{"username": "j", "password": "p", "email": "j@x.org"}',
        headers=((b"content-type", b"application/json"),),
    ),
    Req("GET", "/db"),
    Req("POST", "/send-notification/a@b.c"),
    Req("GET", "/items/?q=" + "z" * 2000, headers=((b"accept-encoding", b"gzip"),)),
    Req(
        "OPTIONS",
        "/items/",
        headers=(
            (b"origin", b"http://localhost:8080"),
            (b"access-control-request-method", b"POST"),
        ),
    ),
    Req("GET", "/", headers=((b"origin", b"http://evil.example"),)),
]


def starlette_tutorial() -> tuple[Any, list[str]]:
    """Starlette's README and docs: routes, responses, path parameters, a WebSocket route,
    mounted routers, middleware and a lifespan."""
    log: list[str] = []

    async def homepage(request: Request) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    async def user(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"Hello, {request.path_params['username']}!")

    async def html(request: Request) -> HTMLResponse:
        return HTMLResponse("<html><body><h1>Hello, world!</h1></body></html>")

    async def echo_body(request: Request) -> Response:
        body = await request.body()
        return Response(gzip.compress(body, mtime=0), media_type="application/gzip")

    async def websocket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("Hello, websocket!")
        await websocket.close()

    class CustomHeaderMiddleware(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: Any) -> Response:
            response: Response = await call_next(request)
            response.headers["Custom"] = "Example"
            return response

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.append("startup")
        yield
        log.append("shutdown")

    routes = [
        Route("/", homepage),
        Route("/html", html),
        Route("/echo", echo_body, methods=["POST"]),
        Mount("/users", routes=[Route("/{username}", user)]),
        WebSocketRoute("/ws", websocket_endpoint),
    ]
    app = Starlette(
        routes=routes, middleware=[Middleware(CustomHeaderMiddleware)], lifespan=lifespan
    )
    return app, log


STARLETTE_TUTORIAL_REQUESTS = [
    Req("GET", "/"),
    Req("GET", "/html"),
    Req("GET", "/users/tom"),
    Req("GET", "/users/"),
    Req("POST", "/echo", body=b"x" * 5000),
    Req("POST", "/"),
]


@pytest.mark.parametrize(
    ("factory", "reqs"),
    [
        pytest.param(fastapi_tutorial, FASTAPI_TUTORIAL_REQUESTS, id="fastapi tutorial"),
        pytest.param(starlette_tutorial, STARLETTE_TUTORIAL_REQUESTS, id="starlette docs"),
    ],
)
def test_tutorial_apps_answer_identically_when_traced(
    factory: Callable[[], tuple[Any, list[str]]], reqs: list[Req]
) -> None:
    app, log = factory()
    expected = run(app, reqs)
    expected_log = list(log)
    log.clear()
    tracer = Tracer()

    assert run(instrument(app, tracer=tracer), reqs) == expected
    assert log == expected_log
    assert len(tracer.traces) == len(reqs)
    assert [t.status for t in tracer.traces] == [o[1] for o in expected]


async def lifespan_messages(app: Any) -> list[dict[str, Any]]:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return sent


async def test_starlette_lifespan_runs_the_same_through_the_tracer() -> None:
    app, log = starlette_tutorial()
    expected = await lifespan_messages(app)
    expected_log = log[:]
    log.clear()
    tracer = Tracer()

    assert await lifespan_messages(instrument(app, tracer=tracer)) == expected
    assert log == expected_log == ["startup", "shutdown"]
    assert tracer.traces == []


def test_starlette_tutorial_websocket_through_the_tracer() -> None:
    app, _ = starlette_tutorial()
    incoming: list[dict[str, Any]] = []
    expected = asyncio.run(drive_websocket(app, b"", incoming))
    tracer = Tracer()
    assert asyncio.run(drive_websocket(instrument(app, tracer=tracer), b"", incoming)) == expected
    assert [m["type"] for m in expected[0]] == [
        "websocket.accept",
        "websocket.send",
        "websocket.close",
    ]
    [trace] = tracer.traces
    assert (trace.type, trace.status, trace.outcome) == ("websocket", 101, "completed")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup needs 3.11")
def test_taskgroup_failure_inside_an_endpoint_raises_the_same_exception_group() -> None:
    app = FastAPI()

    @app.get("/group")
    async def group() -> dict[str, str]:
        async def bad(i: int) -> None:
            await asyncio.sleep(0)
            raise ValueError(f"child {i}")

        async with asyncio.TaskGroup() as tg:
            for i in range(2):
                tg.create_task(bad(i))
        return {}  # pragma: no cover

    async def outcome(app: Any) -> tuple[str, list[str]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            try:
                await client.get("/group")
            except Exception as group:  # an ExceptionGroup (3.11+)
                return type(group).__name__, sorted(str(e) for e in group.exceptions)  # type: ignore[attr-defined]
        raise AssertionError("no exception group")  # pragma: no cover

    expected = asyncio.run(outcome(app))
    assert expected == ("ExceptionGroup", ["child 0", "child 1"])
    assert asyncio.run(outcome(instrument(app))) == expected


def test_trace_of_a_tutorial_request_is_complete() -> None:
    """Sanity check that the differential runs really were traced, not passed through."""
    app, _ = fastapi_tutorial()
    tracer = Tracer()
    run(instrument(app, tracer=tracer), [Req("GET", "/")])
    trace: Trace = tracer.traces[0]
    assert trace.outcome == "completed"
    assert trace.status == 200
    assert {"received", "sent", "completed"} <= {k.value for k in trace.kinds}


def test_fastapi_form_and_file_upload_tutorial_answers_identically_when_traced() -> None:
    """FastAPI's "Request Forms and Files" tutorial, where python-multipart is installed."""
    pytest.importorskip("python_multipart", reason="FastAPI's Form and File need python-multipart")
    app = FastAPI()

    @app.post("/login/")
    async def login(username: str = Form(), password: str = Form()) -> dict[str, str]:
        return {"username": username}

    @app.post("/files/")
    async def create_file(
        file: bytes = File(),
        fileb: UploadFile = File(),  # noqa: B008
        token: str = Form(),
    ) -> dict[str, Any]:
        return {
            "file_size": len(file),
            "token": token,
            "fileb_content_type": fileb.content_type,
            "fileb_size": len(await fileb.read()),
        }

    form = ((b"content-type", b"application/x-www-form-urlencoded"),)
    multipart = ((b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),)
    upload = _multipart([("token", "t")], "f.bin", _pattern(3, 100_000))
    reqs = [
        Req("POST", "/login/", form, b"username=ann&password=hunter2"),
        Req("POST", "/login/", form, b"username=ann"),
        Req("POST", "/files/", multipart, chunks=_chunked(upload, [1000, 50_000])),
        Req("POST", "/files/", multipart, upload.replace(b'name="file"', b'name="fileb"')),
    ]
    expected = run(app, reqs)
    tracer = Tracer()

    assert run(instrument(app, tracer=tracer), reqs) == expected
    assert [t.status for t in tracer.traces] == [o[1] for o in expected]
