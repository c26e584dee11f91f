"""Security: private by default, bounded reprs, no listening sockets, owner-only files.

Secrets are unique marker strings; the property is that no marker ever appears in
anything a trace exposes: its attributes, ``to_dict()``, its rendered text and the
explain page.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from textwrap import dedent
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from hypothesis import given, strategies as st
from pydantic import BaseModel

from asgitrace import Redactor, Trace, Tracer, explain, instrument
from asgitrace._support._redact import DEFAULT_SECRET_HEADERS, REDACTED
from asgitrace._support._safe import MAX_REPR
from asgitrace.testing import render_text

_markers = itertools.count()


def marker() -> str:
    """A fresh secret: a string that cannot appear in a trace by accident."""
    return f"SeCrEt{next(_markers):04d}x9q"


def everything_exposed(trace: Trace) -> str:
    """Every way a trace's content leaves asgitrace, as one text."""
    return "\n".join(
        [
            json.dumps(trace.to_dict()),
            repr(trace),
            repr(trace.headers),
            repr(trace.response_headers),
            trace.query,
            render_text(trace, width=200),
            explain(trace),
        ]
    )


class UserIn(BaseModel):
    username: str
    password: str


class UserOut(BaseModel):
    username: str


def build_app(secrets: dict[str, str]) -> FastAPI:
    app = FastAPI()

    @app.get("/echo")
    async def echo(request: Request, response: Response) -> dict[str, int]:
        response.set_cookie("session", secrets.get("set-cookie", "s"))
        response.headers["x-auth-token"] = secrets.get("x-auth-token", "t")
        response.headers["x-request-id"] = "visible-request-id"
        await asyncio.sleep(0)
        return {"headers": len(request.headers)}

    @app.get("/locals")
    async def with_locals() -> dict[str, str]:
        password = secrets["password"]
        api_token = secrets["api_token"]
        session_id = secrets["session_id"]
        private_key = secrets["private_key"]
        payload = {"user": "ann", "client_secret": secrets["client_secret"], "n": 1}
        user = "visible-user"
        await asyncio.sleep(0)
        return {
            "user": user,
            "ok": str(bool(password and api_token and session_id and private_key and payload)),
        }

    @app.get("/returns")
    async def returns() -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"access_token": secrets["access_token"], "nested": {"apiKey": secrets["apiKey"]}}

    @app.post("/users", response_model=UserOut)
    async def create_user(user: UserIn) -> Any:
        """FastAPI's tutorial: response_model keeps the password out of the response."""
        await asyncio.sleep(0)
        return user

    return app


async def call(app: Any, method: str, url: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, url, **kwargs)


# --- Headers, query strings and cookies ---------------------------------------------------------

SECRET_LOOKING_HEADERS = [
    "x-session-id",
    "X-CSRFToken",
    "x-my-api-key",
    "x-client-secret",
    "x-signature",
    "x-jwt-assertion",
    "x-otp",
    "x-user-password",
    "x-credentials",
]
SECRET_QUERY_NAMES = [
    "token", "access_token", "api_key", "apikey", "password", "passwd", "pwd",
    "client_secret", "session", "auth", "jwt", "signature", "key", "private_key", "code_otp",
]  # fmt: skip


async def test_default_secret_headers_query_values_and_cookies_never_reach_a_trace() -> None:
    secrets = {name: marker() for name in [*DEFAULT_SECRET_HEADERS, *SECRET_LOOKING_HEADERS]}
    query = {name: marker() for name in SECRET_QUERY_NAMES}
    headers = [(n, v) for n, v in secrets.items() if n not in {"set-cookie", "cookie"}]
    headers.append(("cookie", f"session={secrets['cookie']}; theme=dark"))
    headers.append(("x-request-id", "visible-request-id"))
    tracer = Tracer()

    response = await call(
        instrument(build_app(secrets), tracer=tracer),
        "GET",
        "/echo",
        params={**query, "page": "visible-page"},
        headers=headers,
    )

    assert response.status_code == 200
    assert secrets["set-cookie"] in response.headers["set-cookie"]  # the client got it
    [trace] = tracer.traces
    exposed = everything_exposed(trace)
    leaked = [v for v in [*secrets.values(), *query.values()] if v in exposed]
    assert leaked == []
    assert "visible-request-id" in exposed
    assert "page=visible-page" in trace.query
    assert dict(trace.headers)["cookie"] == REDACTED
    assert ("set-cookie", REDACTED) in trace.response_headers
    assert ("x-auth-token", REDACTED) in trace.response_headers


secret_fragments = st.sampled_from(
    ["password", "passwd", "pwd", "secret", "token", "auth", "session", "cookie",
     "credential", "signature", "api_key", "api-key", "apikey", "private_key", "jwt",
     "bearer", "otp"]
)  # fmt: skip
name_affixes = st.sampled_from(["", "x-", "my_", "user-", "_"])
secret_names = st.builds(
    lambda prefix, fragment, suffix, upper: (
        (prefix + fragment + suffix).upper() if upper else prefix + fragment + suffix
    ),
    name_affixes,
    secret_fragments,
    st.sampled_from(["", "-id", "_value", "s"]),
    st.booleans(),
)
plain_names = st.sampled_from(["page", "q", "x-request-id", "accept-language", "sort", "x-trace"])


@given(
    secret=st.lists(secret_names, min_size=1, max_size=4, unique_by=str.lower),
    plain=st.lists(plain_names, max_size=3, unique=True),
)
def test_any_secret_looking_header_or_query_name_is_redacted(
    secret: list[str], plain: list[str]
) -> None:
    values = {name: marker() for name in secret}
    kept = {name: f"visible{i}" for i, name in enumerate(plain)}
    tracer = Tracer()
    app = instrument(build_app({}), tracer=tracer)
    header_names = {n: n.replace("_", "-") for n in [*values, *kept]}

    asyncio.run(
        call(
            app,
            "GET",
            "/echo",
            params={**values, **kept},
            headers={header_names[n]: v for n, v in {**values, **kept}.items()},
        )
    )

    [trace] = tracer.traces
    exposed = everything_exposed(trace)
    assert [v for v in values.values() if v in exposed] == []
    assert all(v in trace.query for v in kept.values())
    assert all(v in dict(trace.headers).values() for v in kept.values())


@pytest.mark.parametrize(
    ("redact", "hidden", "shown"),
    [
        pytest.param(["x-tenant"], {"x-tenant", "authorization"}, {"x-plain"}, id="extra names"),
        pytest.param(False, set(), {"x-tenant", "authorization", "x-plain"}, id="off"),
        pytest.param(
            Redactor(headers={"x-plain"}, pattern=r"tenant"),
            {"x-tenant", "x-plain"},
            {"authorization"},
            id="own redactor",
        ),
    ],
)
async def test_redaction_is_configurable(redact: Any, hidden: set[str], shown: set[str]) -> None:
    values = {name: marker() for name in ["x-tenant", "authorization", "x-plain"]}
    tracer = Tracer(redact=redact)

    await call(instrument(build_app({}), tracer=tracer), "GET", "/echo", headers=values)

    stored = dict(tracer.traces[0].headers)
    assert {n for n in values if stored[n] == REDACTED} == hidden
    assert {n for n in values if stored[n] == values[n]} == shown


async def test_secret_query_values_inside_location_and_referer_are_redacted() -> None:
    token, code = marker(), marker()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        location = f"https://client.example/cb?code={code}&access_token={token}&state=s"
        headers = [(b"location", location.encode())]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    tracer = Tracer()
    referer = f"https://app.example/page?session={token}"
    await call(instrument(app, tracer=tracer), "GET", "/login", headers={"referer": referer})

    exposed = everything_exposed(tracer.traces[0])
    assert token not in exposed


async def test_malformed_header_entries_never_store_their_values() -> None:
    secret = marker()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {secret}".encode(), b"extra"),
            [b"cookie", f"sid={secret}".encode()],  # a list, not a tuple: fine in ASGI
        ],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    tracer = Tracer()
    await instrument(app, tracer=tracer)(scope, receive, send)

    assert secret not in everything_exposed(tracer.traces[0])


# --- Captured locals and returned values --------------------------------------------------------


async def test_watched_locals_with_secret_names_or_keys_are_redacted() -> None:
    secrets = {
        name: marker()
        for name in ["password", "api_token", "session_id", "private_key", "client_secret"]
    }
    watch = ["password", "api_token", "session_id", "private_key", "payload", "user"]
    tracer = Tracer(watch=watch)

    response = await call(instrument(build_app(secrets), tracer=tracer), "GET", "/locals")

    assert response.json()["ok"] == "True"
    [trace] = tracer.traces
    [awaiting] = trace.awaits()
    watched = awaiting.get("watched")
    assert {n: watched[n] for n in watch[:4]} == dict.fromkeys(watch[:4], REDACTED)
    assert REDACTED in watched["payload"]
    assert "'user': 'ann'" in watched["payload"]
    assert watched["user"] == "'visible-user'"
    assert [v for v in secrets.values() if v in everything_exposed(trace)] == []


async def test_locals_are_captured_only_when_asked_for() -> None:
    secrets = {n: marker() for n in ["password", "api_token", "session_id", "private_key"]}
    secrets["client_secret"] = marker()
    tracer = Tracer()

    await call(instrument(build_app(secrets), tracer=tracer), "GET", "/locals")

    [trace] = tracer.traces
    assert all(e.get("watched") is None for e in trace.events)
    assert [v for v in secrets.values() if v in everything_exposed(trace)] == []


@pytest.mark.skipif(sys.version_info < (3, 12), reason="return values are captured on 3.12+")
async def test_returned_values_under_secret_keys_are_redacted() -> None:
    secrets = {"access_token": marker(), "apiKey": marker()}
    tracer = Tracer()

    response = await call(instrument(build_app(secrets), tracer=tracer), "GET", "/returns")

    assert response.json()["access_token"] == secrets["access_token"]
    [trace] = tracer.traces
    [returned] = trace.of_kind("returned")
    assert REDACTED in returned.get("value")
    assert [v for v in secrets.values() if v in everything_exposed(trace)] == []


async def test_models_with_secret_fields_are_redacted_in_watched_locals_and_returns() -> None:
    password = marker()
    tracer = Tracer(watch=["user"])

    response = await call(
        instrument(build_app({}), tracer=tracer),
        "POST",
        "/users",
        json={"username": "ann", "password": password},
    )

    assert response.json() == {"username": "ann"}  # response_model filtered it out...
    assert password not in everything_exposed(tracer.traces[0])  # ...and so must asgitrace


# --- Bounded, exception-safe reprs --------------------------------------------------------------


class Huge:
    def __repr__(self) -> str:
        return "H" * 5_000_000


class Raising:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class NotAString:
    def __repr__(self) -> Any:
        return 42


def hostile_values() -> dict[str, Any]:
    recursive: list[Any] = []
    recursive.append(recursive)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(500):
        node["d"] = {}
        node = node["d"]
    return {
        "long_text": "t" * 5_000_000,
        "long_bytes": b"b" * 5_000_000,
        "long_list": list(range(1_000_000)),
        "big_dict": {f"k{i}": "v" * 1000 for i in range(10_000)},
        "recursive": recursive,
        "deep": deep,
        "huge_repr": Huge(),
        "raising_repr": Raising(),
        "not_a_string": NotAString(),
        "big_int": 10**10_000,
    }


async def test_captured_reprs_are_bounded_and_never_raise() -> None:
    app = FastAPI()
    names = list(hostile_values())

    @app.get("/hostile")
    async def hostile() -> dict[str, int]:
        values = hostile_values()
        long_text = values["long_text"]
        long_bytes = values["long_bytes"]
        long_list = values["long_list"]
        big_dict = values["big_dict"]
        recursive = values["recursive"]
        deep = values["deep"]
        huge_repr = values["huge_repr"]
        raising_repr = values["raising_repr"]
        not_a_string = values["not_a_string"]
        big_int = values["big_int"]
        await asyncio.sleep(0)
        del long_text, long_bytes, long_list, big_dict, recursive, deep
        del huge_repr, raising_repr, not_a_string, big_int
        return {"n": len(values)}

    tracer = Tracer(watch=names)
    response = await call(instrument(app, tracer=tracer), "GET", "/hostile")

    assert response.json() == {"n": len(names)}
    [trace] = tracer.traces
    [awaiting] = trace.awaits()
    watched = awaiting.get("watched")
    assert set(watched) == set(names)
    assert all(isinstance(v, str) and len(v) <= MAX_REPR for v in watched.values()), {
        n: len(v) for n, v in watched.items()
    }
    assert len(json.dumps(trace.to_dict())) < 50_000


@pytest.mark.skipif(sys.version_info < (3, 12), reason="return values are captured on 3.12+")
@pytest.mark.parametrize("name", ["long_text", "big_dict", "recursive", "deep", "huge_repr"])
async def test_returned_values_are_bounded(name: str) -> None:
    app = FastAPI()

    class HostileResponse(Response):
        def __repr__(self) -> str:
            return repr(hostile_values()[name])

    @app.get("/r")
    async def r() -> Response:
        return HostileResponse(b"ok")

    tracer = Tracer()
    await call(instrument(app, tracer=tracer), "GET", "/r")

    [returned] = tracer.traces[0].of_kind("returned")
    assert len(returned.get("value")) <= MAX_REPR


# --- Nothing listens, files are private ---------------------------------------------------------

NO_LISTEN_SCRIPT = dedent(
    """
    import asyncio, os, socket, sys

    listened = []
    original_listen = socket.socket.listen
    def listen(self, *args):
        listened.append(self.getsockname())
        return original_listen(self, *args)
    socket.socket.listen = listen

    def listening_inodes():
        # sockets of this process that are in the LISTEN state (0A) in /proc/net/*
        mine = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                mine.add(target[8:-1])
        found = []
        for table in ("tcp", "tcp6", "udp", "udp6"):
            try:
                with open(f"/proc/net/{table}") as f:
                    rows = f.read().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                cols = row.split()
                if cols[9] in mine and (cols[3] == "0A" or table.startswith("udp")):
                    found.append((table, cols[1]))
        return found

    import asgitrace
    import asgitrace.testing
    from asgitrace import Tracer, instrument
    import httpx
    from fastapi import FastAPI, WebSocket

    app = FastAPI()

    @app.get("/wait")
    async def wait():
        await asyncio.sleep(0.001)
        return {"ok": True}

    @app.get("/block")
    def block():
        return {"sync": True}

    tracer = Tracer(blocking_threshold=0.01)

    async def main():
        transport = httpx.ASGITransport(app=instrument(app, tracer=tracer))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(5):
                await client.get("/wait")
                await client.get("/block")
        return listening_inodes()

    found = asyncio.run(main())
    for trace in tracer.traces:
        asgitrace.testing.render_text(trace)
        asgitrace.explain(trace)
    print(repr((len(tracer.traces), listened, found, listening_inodes())))
    """
)


NEEDS_PROC = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="lists sockets through Linux's /proc"
)


@NEEDS_PROC
def test_importing_and_tracing_opens_no_listening_socket() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_LISTEN_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    traces, listened, found_during, found_after = eval(result.stdout.strip().splitlines()[-1])
    assert traces == 10
    assert (listened, found_during, found_after) == ([], [], [])


@NEEDS_PROC
def test_the_socket_check_sees_a_listening_socket() -> None:
    """The check above is not vacuous: the same script flags a server it starts."""
    script = NO_LISTEN_SCRIPT.replace(
        "found = asyncio.run(main())",
        "server = socket.create_server(('127.0.0.1', 0))\nfound = asyncio.run(main())",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    _, listened, found_during, _ = eval(result.stdout.strip().splitlines()[-1])
    assert len(listened) == 1
    assert len(found_during) == 1


def write_with(writer: str, path: Path, secret: str) -> None:
    """Trace one request carrying *secret*, and write it to *path* with *writer*."""
    from asgitrace import exporters

    async def main() -> None:
        sink = exporters.JsonlSink(path) if writer == "JsonlSink" else None
        tracer = Tracer(on_trace=sink)
        app = instrument(build_app({}), tracer=tracer)
        await call(app, "GET", "/echo", headers={"authorization": secret})
        if sink is not None:
            sink.close()
        else:
            getattr(exporters, writer)(tracer.traces, path)

    asyncio.run(main())


@pytest.mark.parametrize("writer", ["JsonlSink", "write_jsonl", "write_perfetto"])
def test_files_asgitrace_writes_are_readable_by_their_owner_only(
    writer: str, tmp_path: Path
) -> None:
    path = tmp_path / "traces" / "out.json"
    path.parent.mkdir()
    secret = marker()

    previous = os.umask(0o022)  # a permissive umask: the writer must not rely on the user's
    try:
        write_with(writer, path, secret)
    finally:
        os.umask(previous)

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [path]
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & 0o077 == 0, f"{writer} left {path} readable by others: {oct(mode)}"
    text = path.read_text(encoding="utf-8")
    assert "/echo" in text
    assert secret not in text
