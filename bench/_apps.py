"""The FastAPI app under test and its three variants (untraced, traced, 1 % sampled).

Shared by the in-process benchmark (`_inprocess`) and the HTTP server (`_serve`), so both
measure exactly the same app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from asgitrace import TraceMiddleware, Tracer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VARIANTS = ("untraced", "traced", "sampled")
"""untraced: the bare app; traced: `Tracer(max_traces=1000)`; sampled: `sample_rate=0.01`."""

SAMPLE_RATE = 0.01
MAX_TRACES = 1000


@dataclass(frozen=True)
class Endpoint:
    """One route of the app under test and the exact body it must answer."""

    name: str
    path: str
    body: bytes
    description: str


ENDPOINTS: dict[str, Endpoint] = {
    "hello": Endpoint("hello", "/hello", b'{"hello":"world"}', 'async: return {"hello": "world"}'),
    "three": Endpoint("three", "/three", b'{"awaits":3}', "async: 3 x await asyncio.sleep(0)"),
    "sync": Endpoint("sync", "/sync", b'{"hello":"world"}', "sync def (anyio thread pool)"),
}

SUSPEND_PATH = "/suspend"
"""The per-suspension microbenchmark route: ``await asyncio.sleep(0)`` N times."""

TRACES_PATH = "/bench-traces"
"""How many traces the served variant stored: proves the traced server really traced."""


def build_app(endpoints: Iterable[str] = tuple(ENDPOINTS), suspensions: int = 0) -> FastAPI:
    """Build the FastAPI app with the benchmark endpoints asked for.

    Args:
        endpoints: Names from `ENDPOINTS` to route.
        suspensions: When positive, also route `SUSPEND_PATH`, which awaits
            ``asyncio.sleep(0)`` that many times.

    Raises:
        ValueError: an endpoint name is unknown.
    """
    wanted = set(endpoints)
    unknown = wanted - set(ENDPOINTS)
    if unknown:
        raise ValueError(f"unknown endpoints: {', '.join(sorted(unknown))}")
    app = FastAPI()

    if "hello" in wanted:

        @app.get("/hello")
        async def hello() -> dict[str, str]:
            return {"hello": "world"}

    if "three" in wanted:

        @app.get("/three")
        async def three() -> dict[str, int]:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return {"awaits": 3}

    if "sync" in wanted:

        @app.get("/sync")
        def sync() -> dict[str, str]:
            return {"hello": "world"}

    if suspensions > 0:

        @app.get(SUSPEND_PATH)
        async def suspend() -> dict[str, int]:
            for _ in range(suspensions):
                await asyncio.sleep(0)
            return {"suspensions": suspensions}

    return app


def make_tracer(variant: str, max_events: int | None = None) -> Tracer | None:
    """The tracer a variant uses, or ``None`` for the untraced app.

    Args:
        variant: One of `VARIANTS`.
        max_events: Per-trace event cap, when the default (10 000) could drop events.
    """
    if variant == "untraced":
        return None
    options: dict[str, Any] = {"max_traces": MAX_TRACES}
    if max_events is not None:
        options["max_events"] = max_events
    if variant == "sampled":
        options["sample_rate"] = SAMPLE_RATE
    elif variant != "traced":
        raise ValueError(f"unknown variant {variant!r} (expected one of {', '.join(VARIANTS)})")
    return Tracer(**options)


def wrap(app: ASGIApp, tracer: Tracer | None) -> ASGIApp:
    """Wrap *app* in `TraceMiddleware` when there is a tracer, else return it unchanged."""
    if tracer is None:
        return app
    return TraceMiddleware(app, tracer=tracer)


def add_traces_route(app: FastAPI, tracer: Tracer | None) -> None:
    """Add `TRACES_PATH`, answering how many traces *tracer* holds (0 when untraced)."""

    @app.get(TRACES_PATH)
    async def stored_traces() -> dict[str, int]:
        return {"traces": len(tracer.traces) if tracer is not None else 0}
