"""Shared fixtures: a fake clock, a fake ASGI server, scopes and a reset of the failure log.

Helpers are handed out through fixtures (the suite runs with ``--import-mode=importlib``,
so test modules cannot import this file).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from asgitrace import _log

Message = dict[str, Any]


class FakeClock:
    """A nanosecond clock that moves only when a test tells it to."""

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1e9)


class FakeServer:
    """The server side of one ASGI call: scripted incoming messages, recorded outgoing ones.

    ``receive`` hands out *incoming* in order and then ``http.disconnect``; when a
    *gate* is given, the messages after the first wait for it (to make a client go away
    at a precise moment).
    """

    def __init__(self, *incoming: Message, gate: asyncio.Event | None = None) -> None:
        self.incoming = list(incoming) or [
            {"type": "http.request", "body": b"", "more_body": False}
        ]
        self.sent: list[Message] = []
        self.received: list[Message] = []
        self.gate = gate
        # Bound once, so that tests can check the app got these very objects (`is`).
        self.receive = self._receive
        self.send = self._send

    async def _receive(self) -> Message:
        if self.gate is not None and self.received:
            await self.gate.wait()
        message = self.incoming.pop(0) if self.incoming else {"type": "http.disconnect"}
        self.received.append(message)
        return message

    async def _send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


def make_scope(
    path: str = "/",
    *,
    method: str = "GET",
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    type: str = "http",
    **extra: Any,
) -> dict[str, Any]:
    """An ASGI scope as a server would build it."""
    scope: dict[str, Any] = {
        "type": type,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws" if type == "websocket" else "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers or [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    if type == "http":
        scope["method"] = method
    scope.update(extra)
    return scope


@pytest.fixture(autouse=True)
def _fresh_failure_log() -> Iterator[None]:
    """`log_failure` reports each component once per process: make that once per test."""
    _log._reported.clear()
    yield
    _log._reported.clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_server() -> type[FakeServer]:
    return FakeServer


@pytest.fixture
def scope() -> Callable[..., dict[str, Any]]:
    return make_scope


@pytest.fixture
def fake_clock_type() -> type[FakeClock]:
    return FakeClock
