"""TraceMiddleware: ASGI-level capture, transparency, fail-open, sampling, exclusion, privacy."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import random
import re
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from asgitrace import EventKind, Trace, TraceMiddleware, Tracer, instrument
from asgitrace._support._log import log_failure

DELAY = 0.02
"""Seconds the reference endpoint sleeps: long enough to see, short enough for a fast suite."""

BODY_MARKER = "BODY-MARKER-7f3a9c"
SECRET_AUTH = "Bearer SECRET-AUTH-51d2"
SECRET_PROXY = "Basic SECRET-PROXY-8e10"
SECRET_COOKIE = "SECRET-COOKIE-c4a7"
SECRET_KEY = "SECRET-KEY-0b9f"
SECRET_CUSTOM = "SECRET-CUSTOM-66aa"
SECRET_SET_COOKIE = "SECRET-SET-COOKIE-93e1"
SECRET_TOKEN = "SECRET-TOKEN-2f77"


def build_app() -> FastAPI:
    """A small FastAPI app with one endpoint per behaviour under test."""
    app = FastAPI()

    @app.get("/wait")
    async def wait_endpoint() -> dict[str, str]:
        await asyncio.sleep(DELAY)
        return {"message": "Done waiting"}

    @app.post("/items")
    async def create_item(item: dict[str, Any]) -> dict[str, Any]:
        # Not echoing the body: on 3.12+ the return value is recorded (by design).
        return {"fields": len(item), "marker_length": len(item["marker"])}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for size in (1, 2, 3):
                yield b"x" * size

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="no such thing")

    @app.get("/login")
    async def login(response: Response) -> dict[str, str]:
        response.set_cookie("session", SECRET_SET_COOKIE)
        response.headers["x-request-id"] = "req-1"
        return {"logged_in": "yes"}

    @app.get("/redirect")
    async def redirect() -> RedirectResponse:
        return RedirectResponse("/wait", status_code=307)

    @app.get("/search")
    async def search(q: str = "", token: str = "") -> dict[str, str]:
        return {"q": q}

    return app


async def call(app: Any, method: str, url: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, url, **kwargs)


def snapshot(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, response.headers.multi_items(), response.content


def only_trace(tracer: Tracer) -> Trace:
    traces = tracer.traces
    assert len(traces) == 1, f"expected exactly one trace, got {len(traces)}"
    return traces[0]


def sent_bodies(trace: Trace) -> list[tuple[int, bool]]:
    return [
        (e.get("body_bytes"), e.get("more_body"))
        for e in trace.of_kind("sent")
        if e.get("type") == "http.response.body"
    ]


@pytest.fixture
def tracer() -> Tracer:
    return Tracer()


@pytest.fixture
def traced_app(tracer: Tracer) -> TraceMiddleware:
    return instrument(build_app(), tracer=tracer)


# --- ASGI-level capture through a real FastAPI app ------------------------------------------


async def test_reference_endpoint_records_arrival_response_and_completion(
    tracer: Tracer, traced_app: TraceMiddleware
) -> None:
    response = await call(traced_app, "GET", "/wait")

    assert response.json() == {"message": "Done waiting"}
    trace = only_trace(tracer)
    assert (trace.type, trace.method, trace.path, trace.route) == ("http", "GET", "/wait", "/wait")
    assert (trace.status, trace.outcome, trace.exception) == (200, "completed", None)
    trace.assert_order(
        ("received", "/wait"),
        ("sent", "http.response.start"),
        ("sent", "http.response.body"),
        "completed",
    )
    assert trace.kinds[0] == EventKind.RECEIVED
    assert trace.kinds[-1] == EventKind.COMPLETED
    first = trace.events[0]
    assert dict(first.fields) == {
        "type": "http",
        "path": "/wait",
        "method": "GET",
        "http_version": "1.1",
    }
    start = next(e for e in trace.of_kind("sent") if e.get("type") == "http.response.start")
    assert (start.get("status"), start.get("content_type")) == (200, "application/json")
    assert sent_bodies(trace) == [(len(response.content), False)]
    assert trace.duration >= DELAY * 0.9


async def test_reference_endpoint_trace_runs_in_the_calling_task(
    tracer: Tracer, traced_app: TraceMiddleware
) -> None:
    await call(traced_app, "GET", "/wait")

    trace = only_trace(tracer)
    current = asyncio.current_task()
    assert current is not None
    assert trace.task.name == current.get_name()
    assert {e.task for e in trace.events} == {trace.task}


async def test_json_post_records_the_body_size_and_never_the_body(
    tracer: Tracer, traced_app: TraceMiddleware
) -> None:
    content = json.dumps({"marker": BODY_MARKER, "n": 1}).encode()

    response = await call(
        traced_app, "POST", "/items", content=content, headers={"content-type": "application/json"}
    )

    assert response.json() == {"fields": 2, "marker_length": len(BODY_MARKER)}
    trace = only_trace(tracer)
    requests = [e for e in trace.of_kind("received") if e.get("type") == "http.request"]
    assert sum(e.get("body_bytes") for e in requests) == len(content)
    assert requests[-1].get("more_body") is False
    assert sent_bodies(trace) == [(len(response.content), False)]
    assert BODY_MARKER not in repr(trace.to_dict())


async def test_streaming_response_records_each_chunk_then_the_last_one(
    tracer: Tracer, traced_app: TraceMiddleware
) -> None:
    response = await call(traced_app, "GET", "/stream")

    assert response.content == b"xxxxxx"
    trace = only_trace(tracer)
    assert sent_bodies(trace) == [(1, True), (2, True), (3, True), (0, False)]
    assert trace.outcome == "completed"


async def test_endpoint_exception_fails_the_trace_and_reaches_the_caller_unchanged(
    tracer: Tracer, traced_app: TraceMiddleware
) -> None:
    with pytest.raises(RuntimeError) as untraced:
        await call(build_app(), "GET", "/boom")
    with pytest.raises(RuntimeError) as traced:
        await call(traced_app, "GET", "/boom")

    assert (type(traced.value), str(traced.value)) == (type(untraced.value), str(untraced.value))
    trace = only_trace(tracer)
    assert (trace.outcome, trace.exception, trace.status) == ("failed", "RuntimeError", 500)
    assert trace.events[-1].get("exception") == "RuntimeError"


async def test_endpoint_exception_gives_the_same_500_when_the_client_does_not_raise(
    tracer: Tracer, traced_app: TraceMiddleware
) -> None:
    async def get_500(app: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get("/boom")

    untraced = await get_500(build_app())
    traced = await get_500(traced_app)

    assert snapshot(traced) == snapshot(untraced)
    assert snapshot(traced)[0] == 500
    assert only_trace(tracer).outcome == "failed"


async def test_add_middleware_records_the_failure_before_the_error_page_is_sent(
    tracer: Tracer,
) -> None:
    app = build_app()
    app.add_middleware(TraceMiddleware, tracer=tracer)

    with pytest.raises(RuntimeError, match=r"^kaboom$"):
        await call(app, "GET", "/boom")

    trace = only_trace(tracer)
    # Starlette's ServerErrorMiddleware sits outside user middleware: it sends the 500.
    assert (trace.outcome, trace.exception, trace.status) == ("failed", "RuntimeError", None)


async def test_http_exception_completes_with_its_status(
    tracer: Tracer, traced_app: TraceMiddleware
) -> None:
    response = await call(traced_app, "GET", "/missing")

    assert (response.status_code, response.json()) == (404, {"detail": "no such thing"})
    trace = only_trace(tracer)
    assert (trace.status, trace.outcome, trace.exception) == (404, "completed", None)


async def test_unknown_route_completes_with_404_and_no_route(
    tracer: Tracer, traced_app: TraceMiddleware
) -> None:
    response = await call(traced_app, "GET", "/nowhere")

    assert response.status_code == 404
    trace = only_trace(tracer)
    assert (trace.status, trace.route, trace.outcome) == (404, None, "completed")


# --- WebSocket and disconnects (hand-written fakes) -------------------------------------------


async def test_websocket_messages_are_recorded_with_their_sizes(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer()

    async def echo(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        text = await receive()
        await send({"type": "websocket.send", "text": text["text"] * 2})
        data = await receive()
        await send({"type": "websocket.send", "bytes": data["bytes"] + b"!"})
        await send({"type": "websocket.close", "code": 1001})

    server = fake_server(
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "héllo"},
        {"type": "websocket.receive", "bytes": b"\x00\x01\x02"},
    )
    await instrument(echo, tracer=tracer)(
        scope("/ws", type="websocket"), server.receive, server.send
    )

    trace = only_trace(tracer)
    assert (trace.type, trace.method, trace.status, trace.outcome) == (
        "websocket",
        None,
        101,
        "completed",
    )
    messages = [
        (e.kind.value, dict(e.fields)) for e in trace.events if e.kind in ("received", "sent")
    ][1:]
    assert messages == [
        ("received", {"type": "websocket.connect"}),
        ("sent", {"type": "websocket.accept", "status": 101}),
        ("received", {"type": "websocket.receive", "text_chars": 5}),
        ("sent", {"type": "websocket.send", "text_chars": 10}),
        ("received", {"type": "websocket.receive", "body_bytes": 3}),
        ("sent", {"type": "websocket.send", "body_bytes": 4}),
        ("sent", {"type": "websocket.close", "code": 1001}),
    ]


async def test_websocket_close_without_code_records_the_default_code(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    server = fake_server({"type": "websocket.connect"})
    await instrument(app, tracer=tracer)(
        scope("/ws", type="websocket"), server.receive, server.send
    )

    close = only_trace(tracer).of_kind("sent")[-1]
    assert dict(close.fields) == {"type": "websocket.close", "code": 1000}


async def test_websocket_client_going_away_is_recorded_as_a_disconnect(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"

    server = fake_server(
        {"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1001}
    )
    await instrument(app, tracer=tracer)(
        scope("/ws", type="websocket"), server.receive, server.send
    )

    trace = only_trace(tracer)
    trace.assert_order(("sent", 101), ("disconnected", "websocket.disconnect"), "completed")


async def test_client_disconnecting_mid_stream_ends_the_trace_as_disconnected(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        message = await receive()
        assert message["type"] == "http.disconnect"

    server = fake_server()
    await instrument(app, tracer=tracer)(scope("/stream"), server.receive, server.send)

    trace = only_trace(tracer)
    assert trace.outcome == "disconnected"
    assert trace.status == 200
    trace.assert_order(("sent", 200), ("sent", "http.response.body"), "disconnected", "completed")
    assert dict(trace.of_kind("disconnected")[0].fields) == {"type": "http.disconnect"}


async def test_client_disconnecting_before_the_response_ends_the_trace_as_disconnected(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    server = fake_server({"type": "http.disconnect"})
    await instrument(app, tracer=tracer)(scope(), server.receive, server.send)

    trace = only_trace(tracer)
    assert (trace.outcome, trace.status) == ("disconnected", None)


async def test_disconnect_after_the_last_body_chunk_still_counts_as_completed(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"done"})
        await receive()

    server = fake_server()
    await instrument(app, tracer=tracer)(scope(), server.receive, server.send)

    trace = only_trace(tracer)
    assert "disconnected" in trace.kinds
    assert trace.outcome == "completed"


async def test_streaming_response_stopped_by_a_client_disconnect_is_disconnected(
    scope: Any, fake_server: Any
) -> None:
    """A real StreamingResponse, cut off after its first chunk by ``http.disconnect``."""
    tracer = Tracer()
    app = FastAPI()
    first_chunk_sent = asyncio.Event()

    @app.get("/feed")
    async def feed() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            first_chunk_sent.set()
            await asyncio.Event().wait()  # the client goes away before a second chunk
            yield b"never"  # pragma: no cover

        return StreamingResponse(chunks())

    server = fake_server(
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
        gate=first_chunk_sent,
    )
    await instrument(app, tracer=tracer)(scope("/feed"), server.receive, server.send)

    assert server.body == b"first"
    trace = only_trace(tracer)
    assert trace.outcome == "disconnected"
    assert sent_bodies(trace) == [(5, True)]


# --- Sampling and exclusion -------------------------------------------------------------------


async def test_unsampled_requests_reach_the_app_with_the_original_receive_and_send(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer(sample_rate=0)
    seen: list[tuple[Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((receive, send))

    server = fake_server()
    await instrument(app, tracer=tracer)(scope(), server.receive, server.send)

    assert len(seen) == 1
    assert seen[0][0] is server.receive
    assert seen[0][1] is server.send
    assert tracer.traces == []


def test_an_untraced_request_gets_the_apps_own_awaitable(scope: Any, fake_server: Any) -> None:
    # No coroutine of asgitrace's around an unsampled request: the app's, as it is.
    made: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        return None

    def app(scope: Any, receive: Any, send: Any) -> Any:
        made.append(inner(scope, receive, send))
        return made[-1]

    server = fake_server()
    awaitable = instrument(app, sample_rate=0)(scope(), server.receive, server.send)

    assert made == [awaitable]
    awaitable.close()


def test_servers_see_an_asgi3_app() -> None:
    # uvicorn picks ASGI 3 by `iscoroutinefunction(app.__call__)`; Starlette's
    # `is_async_callable` decides how to call it: both must say "async".
    from starlette._utils import is_async_callable
    from uvicorn.config import Config

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    traced = instrument(app, tracer=Tracer())
    config = Config(traced)
    config.load()

    assert config.interface == "asgi3"
    assert is_async_callable(traced)
    assert asyncio.iscoroutinefunction(traced.__call__)
    if sys.version_info >= (3, 12):
        assert inspect.iscoroutinefunction(traced.__call__)


async def test_a_trace_opens_in_the_task_that_awaits_the_request(
    scope: Any, fake_server: Any
) -> None:
    # The call happens here; the request runs in another task: the trace names that one.
    tracer = Tracer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    server = fake_server()
    pending = instrument(app, tracer=tracer)(scope(), server.receive, server.send)
    await asyncio.create_task(_awaiting(pending), name="the-request")

    assert only_trace(tracer).task.name == "the-request"


async def _awaiting(awaitable: Any) -> None:
    await awaitable


async def test_sample_rate_zero_records_nothing_through_fastapi() -> None:
    tracer = Tracer(sample_rate=0.0)

    response = await call(instrument(build_app(), tracer=tracer), "GET", "/redirect")

    assert response.status_code == 307
    assert tracer.traces == []


async def test_sample_rate_half_traces_exactly_the_draws_below_it(
    scope: Any, fake_server: Any
) -> None:
    requests = 40
    draws = random.Random(20261124)
    expected = sum(draws.random() < 0.5 for _ in range(requests))
    assert 0 < expected < requests  # the seed must exercise both branches
    tracer = Tracer(sample_rate=0.5, rng=random.Random(20261124).random)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    traced = instrument(app, tracer=tracer)
    for _ in range(requests):
        server = fake_server()
        await traced(scope(), server.receive, server.send)
        assert server.status == 204

    assert len(tracer.traces) == expected


@pytest.mark.parametrize(
    ("exclude", "path", "traced"),
    [
        pytest.param(["/health"], "/health", False, id="exact path"),
        pytest.param(["/health"], "/health/", False, id="exact path with trailing slash"),
        pytest.param(["/health/"], "/health", False, id="trailing slash in the rule"),
        pytest.param(["/health"], "/health/live", False, id="subpath of an exact path"),
        pytest.param(["/health"], "/healthz", True, id="longer name is not a subpath"),
        pytest.param(["/health"], "/api/health", True, id="same name elsewhere"),
        pytest.param(["/static*"], "/static", False, id="star prefix, the prefix itself"),
        pytest.param(["/static*"], "/static-files/app.js", False, id="star prefix, any suffix"),
        pytest.param(["/static/*"], "/static/app.js", False, id="star prefix with slash"),
        pytest.param(["/static/*"], "/stat", True, id="star prefix, shorter path"),
        pytest.param([re.compile(r"/items/\d+")], "/items/42", False, id="regex full match"),
        pytest.param([re.compile(r"/items/\d+")], "/items/42/edit", True, id="regex not full"),
        pytest.param([re.compile(r"/items/\d+")], "/items/abc", True, id="regex no match"),
        pytest.param(["/a", re.compile(r"/b.*"), "/c*"], "/b/x", False, id="mixed rules"),
        pytest.param([], "/health", True, id="no rules"),
    ],
)
async def test_excluded_paths_are_not_traced(
    exclude: list[str | re.Pattern[str]], path: str, traced: bool, scope: Any, fake_server: Any
) -> None:
    tracer = Tracer(exclude_paths=exclude)
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(receive)

    server = fake_server()
    await instrument(app, tracer=tracer)(scope(path), server.receive, server.send)

    assert len(tracer.traces) == int(traced)
    assert (seen[0] is server.receive) is not traced


async def test_excluding_the_root_path_keeps_tracing_other_paths(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer(exclude_paths=["/"])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    traced = instrument(app, tracer=tracer)
    for path in ("/", "/items"):
        server = fake_server()
        await traced(scope(path), server.receive, server.send)

    assert [t.path for t in tracer.traces] == ["/items"]


# --- Privacy: redaction before storage --------------------------------------------------------

SECRET_HEADERS = {
    "authorization": SECRET_AUTH,
    "proxy-authorization": SECRET_PROXY,
    "cookie": f"session={SECRET_COOKIE}",
    "x-api-key": SECRET_KEY,
    "x-custom": SECRET_CUSTOM,
    "accept-language": "fr",
}


async def test_secret_request_and_response_headers_are_redacted_before_storage() -> None:
    tracer = Tracer()

    response = await call(
        instrument(build_app(), tracer=tracer), "GET", "/login", headers=SECRET_HEADERS
    )

    assert SECRET_SET_COOKIE in response.headers["set-cookie"]  # the client still gets it
    trace = only_trace(tracer)
    headers = dict(trace.headers)
    assert {name: headers[name] for name in SECRET_HEADERS} == {
        "authorization": "[redacted]",
        "proxy-authorization": "[redacted]",
        "cookie": "[redacted]",
        "x-api-key": "[redacted]",
        "x-custom": SECRET_CUSTOM,
        "accept-language": "fr",
    }
    response_headers = dict(trace.response_headers)
    assert (response_headers["set-cookie"], response_headers["x-request-id"]) == (
        "[redacted]",
        "req-1",
    )
    stored = repr(trace.to_dict())
    for secret in (SECRET_AUTH, SECRET_PROXY, SECRET_COOKIE, SECRET_KEY, SECRET_SET_COOKIE):
        assert secret not in stored


async def test_extra_redacted_names_add_to_the_defaults() -> None:
    tracer = Tracer(redact=["X-Custom"])

    await call(instrument(build_app(), tracer=tracer), "GET", "/login", headers=SECRET_HEADERS)

    headers = dict(only_trace(tracer).headers)
    assert (headers["x-custom"], headers["authorization"], headers["accept-language"]) == (
        "[redacted]",
        "[redacted]",
        "fr",
    )
    assert SECRET_CUSTOM not in repr(only_trace(tracer).to_dict())


async def test_redact_false_stores_headers_as_sent() -> None:
    tracer = Tracer(redact=False)

    await call(instrument(build_app(), tracer=tracer), "GET", "/login", headers=SECRET_HEADERS)

    trace = only_trace(tracer)
    assert dict(trace.headers)["authorization"] == SECRET_AUTH
    assert SECRET_SET_COOKIE in dict(trace.response_headers)["set-cookie"]


async def test_secret_query_parameters_are_redacted_and_others_kept() -> None:
    tracer = Tracer()

    response = await call(
        instrument(build_app(), tracer=tracer), "GET", f"/search?token={SECRET_TOKEN}&q=1"
    )

    assert response.json() == {"q": "1"}
    trace = only_trace(tracer)
    assert trace.query == "token=[redacted]&q=1"
    assert SECRET_TOKEN not in repr(trace.to_dict())


async def test_harmless_query_is_stored_verbatim() -> None:
    tracer = Tracer()

    await call(instrument(build_app(), tracer=tracer), "GET", "/search?q=a%20b&page=2")

    assert only_trace(tracer).query == "q=a%20b&page=2"


# --- Transparency: traced and untraced runs are indistinguishable -----------------------------


@pytest.mark.parametrize(
    ("method", "url", "kwargs"),
    [
        pytest.param("GET", "/wait", {}, id="reference endpoint"),
        pytest.param(
            "POST",
            "/items",
            {"json": {"marker": "m", "other": [1, 2]}},
            id="json body",
        ),
        pytest.param("POST", "/items", {"content": b"not json"}, id="validation error"),
        pytest.param("GET", "/stream", {}, id="streaming"),
        pytest.param("GET", "/missing", {}, id="http exception"),
        pytest.param("GET", "/nowhere", {}, id="no route"),
        pytest.param("DELETE", "/wait", {}, id="method not allowed"),
        pytest.param("GET", "/login", {"headers": {"cookie": "a=b"}}, id="cookies"),
        pytest.param("GET", "/redirect", {}, id="redirect"),
        pytest.param("GET", "/search?q=x&token=t", {}, id="query"),
    ],
)
async def test_traced_response_is_byte_for_byte_the_untraced_one(
    method: str, url: str, kwargs: dict[str, Any]
) -> None:
    tracer = Tracer()

    untraced = await call(build_app(), method, url, **kwargs)
    traced = await call(instrument(build_app(), tracer=tracer), method, url, **kwargs)

    assert snapshot(traced) == snapshot(untraced)
    assert only_trace(tracer).status == untraced.status_code


async def test_app_exception_is_the_very_same_object(scope: Any, fake_server: Any) -> None:
    error = ValueError("exact message")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise error

    tracer = Tracer()
    server = fake_server()
    with pytest.raises(ValueError, match=r"^exact message$") as raised:
        await instrument(app, tracer=tracer)(scope(), server.receive, server.send)

    assert raised.value is error
    assert (only_trace(tracer).outcome, only_trace(tracer).exception) == ("failed", "ValueError")


async def test_base_exception_from_the_app_propagates_and_fails_the_trace(
    scope: Any, fake_server: Any
) -> None:
    class Shutdown(BaseException):
        pass

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        raise Shutdown

    tracer = Tracer()
    server = fake_server()
    with pytest.raises(Shutdown):
        await instrument(app, tracer=tracer)(scope(), server.receive, server.send)

    trace = only_trace(tracer)
    assert (trace.outcome, trace.exception, trace.status) == ("failed", "Shutdown", 200)


async def test_cancelling_the_request_task_propagates_and_ends_the_trace_cancelled(
    scope: Any, fake_server: Any
) -> None:
    async def hanging(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        started.set()
        await asyncio.Event().wait()

    results = []
    tracer = Tracer()
    for app in (hanging, instrument(hanging, tracer=tracer)):
        started = asyncio.Event()
        server = fake_server()
        task = asyncio.create_task(app(scope(), server.receive, server.send))
        await started.wait()
        task.cancel("client went away")
        with pytest.raises(asyncio.CancelledError) as raised:
            await task
        results.append((raised.value.args, task.cancelled()))

    assert results[1] == results[0]
    assert results[0] == (("client went away",), True)
    trace = only_trace(tracer)
    assert (trace.outcome, trace.status, trace.exception) == ("cancelled", 200, None)


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")
APP_STATE: contextvars.ContextVar[str] = contextvars.ContextVar("app_state", default="unset")


async def test_context_variables_flow_in_and_out_as_untraced(scope: Any, fake_server: Any) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(REQUEST_ID.get())
        APP_STATE.set(f"set by app for {scope['path']}")

    async def run(app: Any, path: str) -> tuple[str, str]:
        REQUEST_ID.set(f"caller {path}")
        server = fake_server()
        await app(scope(path), server.receive, server.send)
        return seen[-1], APP_STATE.get()

    seen: list[str] = []
    untraced = await asyncio.create_task(run(app, "/a"))
    traced = await asyncio.create_task(run(instrument(app), "/a"))

    assert traced == untraced
    assert untraced == ("caller /a", "set by app for /a")


async def test_current_task_and_its_name_inside_the_endpoint_are_the_callers() -> None:
    app = FastAPI()
    seen: list[tuple[asyncio.Task[Any] | None, str]] = []

    @app.get("/who")
    async def who() -> dict[str, str]:
        task = asyncio.current_task()
        seen.append((task, task.get_name() if task else ""))
        return {}

    caller = asyncio.current_task()
    assert caller is not None
    await call(app, "GET", "/who")
    await call(instrument(app), "GET", "/who")

    assert seen == [(caller, caller.get_name()), (caller, caller.get_name())]


async def test_app_sees_the_traced_request_as_the_current_task(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer()
    inside: list[asyncio.Task[Any] | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        inside.append(asyncio.current_task())

    server = fake_server()
    task = asyncio.create_task(
        instrument(app, tracer=tracer)(scope(), server.receive, server.send), name="request-7"
    )
    await task

    assert inside == [task]
    assert only_trace(tracer).task.name == "request-7"


@pytest.mark.parametrize("scope_type", ["lifespan", "custom-protocol"])
async def test_non_request_scopes_pass_through_untouched(scope_type: str) -> None:
    tracer = Tracer()
    seen: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))
        message = await receive()
        await send({"type": f"{message['type']}.complete"})

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    original_scope = {"type": scope_type, "asgi": {"version": "3.0"}}
    await instrument(app, tracer=tracer)(original_scope, receive, send)

    assert len(seen) == 1
    assert seen[0][0] is original_scope
    assert seen[0][1] is receive
    assert seen[0][2] is send
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert tracer.traces == []


# --- Fail-open: asgitrace's own errors never reach the app -----------------------------------


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "asgitrace"]


async def test_raising_on_trace_callback_is_logged_once_and_disabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def broken(trace: Trace) -> None:
        calls.append(trace.path)
        raise RuntimeError("callback broke")

    good: list[str] = []
    tracer = Tracer(on_trace=[broken, lambda trace: good.append(trace.path)])
    traced = instrument(build_app(), tracer=tracer)

    first = await call(traced, "GET", "/missing")
    second = await call(traced, "GET", "/redirect")

    untraced = await call(build_app(), "GET", "/missing")
    assert snapshot(first) == snapshot(untraced)
    assert second.status_code == 307
    assert calls == ["/missing"]
    assert good == ["/missing", "/redirect"]
    assert [t.path for t in tracer.traces] == ["/missing", "/redirect"]
    records = failure_records(caplog)
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert "on_trace callback" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is RuntimeError


async def test_failing_sampling_decision_leaves_the_request_untraced(
    scope: Any, fake_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_rng() -> float:
        raise RuntimeError("rng broke")

    tracer = Tracer(sample_rate=0.5, rng=broken_rng)
    seen: list[tuple[Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((receive, send))
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    traced = instrument(app, tracer=tracer)
    for _ in range(2):
        server = fake_server()
        await traced(scope(), server.receive, server.send)
        assert (server.status, server.body) == (200, b"ok")
        assert seen[-1][0] is server.receive
        assert seen[-1][1] is server.send

    assert tracer.traces == []
    records = failure_records(caplog)
    assert [r.getMessage() for r in records] == [
        "asgitrace: opening a trace failed and was disabled; the app is unaffected"
    ]


async def test_malformed_scope_headers_leave_the_request_untraced(
    scope: Any, fake_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tracer = Tracer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body"})

    server = fake_server()
    await instrument(app, tracer=tracer)(scope(headers=42), server.receive, server.send)

    assert server.status == 204
    assert tracer.traces == []
    assert len(failure_records(caplog)) == 1


async def test_malformed_sent_message_is_forwarded_unchanged(
    scope: Any, fake_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tracer = Tracer()
    start_without_status = {"type": "http.response.start", "headers": []}
    body = {"type": "http.response.body", "body": b"x"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start_without_status)
        await send(body)

    traced = instrument(app, tracer=tracer)
    servers = [fake_server(), fake_server()]
    for server in servers:
        await traced(scope(), server.receive, server.send)

    assert [s.sent for s in servers] == [[start_without_status, body]] * 2
    assert servers[0].sent[0] is start_without_status
    trace = tracer.traces[0]
    assert (trace.outcome, trace.status) == ("completed", None)
    assert [e.get("type") for e in trace.of_kind("sent")] == ["http.response.body"]
    records = failure_records(caplog)
    assert len(records) == 1
    assert "recording a sent message" in records[0].getMessage()


async def test_malformed_received_message_reaches_the_app_unchanged(
    scope: Any, fake_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tracer = Tracer()
    odd = {"no_type": True}
    got: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append(await receive())

    server = fake_server(odd)
    await instrument(app, tracer=tracer)(scope(), server.receive, server.send)

    assert got == [odd]
    assert got[0] is odd
    assert only_trace(tracer).outcome == "completed"
    assert "recording a received message" in failure_records(caplog)[0].getMessage()


async def test_failure_while_finishing_a_trace_does_not_reach_the_app(
    scope: Any, fake_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenRoute:
        @property
        def path(self) -> str:
            raise RuntimeError("route broke")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = BrokenRoute()
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"fine"})

    tracer = Tracer()
    server = fake_server()
    await instrument(app, tracer=tracer)(scope(), server.receive, server.send)

    assert server.body == b"fine"
    assert tracer.traces == []
    assert "finishing a trace" in failure_records(caplog)[0].getMessage()


def test_log_failure_reports_each_component_once(caplog: pytest.LogCaptureFixture) -> None:
    log_failure("a probe")
    log_failure("a probe", RuntimeError("again"))
    log_failure("another probe")

    records = failure_records(caplog)
    assert [(r.getMessage(), r.exc_info) for r in records] == [
        ("asgitrace: a probe failed and was disabled; the app is unaffected", None),
        ("asgitrace: another probe failed and was disabled; the app is unaffected", None),
    ]


# --- Construction and instrument() ------------------------------------------------------------


def test_tracer_and_tracer_options_together_are_rejected() -> None:
    with pytest.raises(TypeError, match="sample_rate"):
        TraceMiddleware(build_app(), tracer=Tracer(), sample_rate=1)


def test_instrument_builds_a_tracer_from_options() -> None:
    wrapped = instrument(build_app(), sample_rate=0.25, max_traces=3)

    assert (wrapped.tracer.sample_rate, wrapped.tracer.max_traces) == (0.25, 3)


def test_middleware_without_tracer_or_options_gets_a_default_tracer() -> None:
    assert TraceMiddleware(build_app()).tracer.max_traces == Tracer().max_traces


def test_instrument_uses_the_given_tracer() -> None:
    tracer = Tracer()

    assert instrument(build_app(), tracer=tracer).tracer is tracer


def test_instrumented_app_forwards_attribute_reads_to_the_app() -> None:
    app = build_app()
    wrapped = instrument(app)

    assert wrapped.routes is app.routes
    assert wrapped.state is app.state
    assert wrapped.app is app
    with pytest.raises(AttributeError):
        _ = wrapped.no_such_attribute


def test_instrumented_app_does_not_forward_dunder_lookups() -> None:
    wrapped = instrument(build_app())

    with pytest.raises(AttributeError):
        _ = wrapped.__wrapped__


def test_uninitialised_middleware_raises_attribute_error_instead_of_recursing() -> None:
    bare = TraceMiddleware.__new__(TraceMiddleware)

    with pytest.raises(AttributeError):
        _ = bare.app


def test_middleware_repr_names_the_app_and_tracer() -> None:
    async def my_app(scope: Any, receive: Any, send: Any) -> None:
        return None

    tracer = Tracer(max_traces=5)

    text = repr(TraceMiddleware(my_app, tracer=tracer))

    assert text.startswith("TraceMiddleware(<function ")
    assert "my_app" in text
    assert text.endswith(", tracer=<Tracer sample_rate=1.0 traces=0/5>)")


async def test_one_tracer_collects_from_several_apps(scope: Any, fake_server: Any) -> None:
    tracer = Tracer()

    def app_named(name: str) -> Callable[..., Any]:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": name.encode()})

        return app

    for name in ("one", "two"):
        server = fake_server()
        await instrument(app_named(name), tracer=tracer)(
            scope(f"/{name}"), server.receive, server.send
        )

    assert [t.path for t in tracer.traces] == ["/one", "/two"]


async def test_app_returning_a_plain_awaitable_is_awaited_as_is(
    scope: Any, fake_server: Any
) -> None:
    """An ASGI app may be any callable returning an awaitable, not only a coroutine."""
    tracer = Tracer()
    calls: list[str] = []

    def app(scope: Any, receive: Any, send: Any) -> asyncio.Future[None]:
        calls.append(scope["path"])
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    server = fake_server()
    await instrument(app, tracer=tracer)(scope("/plain"), server.receive, server.send)

    assert calls == ["/plain"]
    assert (only_trace(tracer).path, only_trace(tracer).outcome) == ("/plain", "completed")


async def test_failing_task_hook_still_records_the_asgi_messages(
    scope: Any, fake_server: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asgitrace.capture._middleware as middleware

    def broken_install(*args: Any) -> None:
        raise RuntimeError("no task factory for you")

    monkeypatch.setattr(middleware, "monitor_of", lambda loop: None)
    monkeypatch.setattr(middleware, "install", broken_install)
    tracer = Tracer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    server = fake_server()
    await instrument(app, tracer=tracer)(scope(), server.receive, server.send)

    assert server.body == b"ok"
    trace = only_trace(tracer)
    assert (trace.status, trace.outcome) == (200, "completed")
    assert "task hook" in failure_records(caplog)[0].getMessage()


async def test_scope_without_http_version_records_arrival_without_it(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer()
    bare = scope("/bare")
    del bare["http_version"]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    server = fake_server()
    await instrument(app, tracer=tracer)(bare, server.receive, server.send)

    assert dict(only_trace(tracer).events[0].fields) == {
        "type": "http",
        "path": "/bare",
        "method": "GET",
    }


async def test_an_endpoint_seen_only_through_its_response_is_entered_just_before_it_sends(
    fake_server: Any, scope: Any
) -> None:
    """The router chose an endpoint that never suspended: ``entered`` is derived at the
    first message out, and comes before it (issue 21)."""

    def endpoint() -> None: ...

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["endpoint"] = endpoint  # as a router does
        headers = [(b"Content-Type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    tracer = Tracer()
    server = fake_server()
    await TraceMiddleware(app, tracer=tracer)(scope(), server.receive, server.send)
    trace = only_trace(tracer)
    assert [e.kind.value for e in trace.events] == [
        "received",
        "entered",
        "sent",
        "sent",
        "completed",
    ]
    entered = trace.events[1]
    assert (entered.get("function"), entered.get("derived")) == (
        "test_an_endpoint_seen_only_through_its_response_is_entered_just_before_it_sends."
        "<locals>.endpoint",
        True,
    )


async def test_the_content_type_is_found_whatever_the_case_of_its_name(
    fake_server: Any, scope: Any
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"x-other", b"1"), (b"CONTENT-TYPE", b"text/csv")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b"a,b"})

    tracer = Tracer()
    server = fake_server()
    await TraceMiddleware(app, tracer=tracer)(scope(), server.receive, server.send)
    start = only_trace(tracer).of_kind("sent")[0]
    assert (start.get("status"), start.get("content_type")) == (201, "text/csv")
