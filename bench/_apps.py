"""The FastAPI app under test and its variants: untraced, asgitrace three ways, OpenTelemetry.

Shared by the in-process benchmark (`_inprocess`, `_worker`) and the HTTP server (`_serve`),
so both measure exactly the same app.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

import _realapp
from fastapi import FastAPI

from asgitrace import TraceMiddleware, Tracer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VARIANTS = ("untraced", "traced", "sampled", "slow", "otel")
"""What each variant wraps the app in:

- ``untraced``: nothing, the bare app (every ratio is to it);
- ``traced``: asgitrace in full, `Tracer(max_traces=1000)`: every request traced (task hook,
  blocking watchdog) and kept in the ring;
- ``sampled``: `Tracer(max_traces=1000, sample_rate=0.01)`: 1 % of the requests traced;
- ``slow``: `Tracer(max_traces=1000, slow_threshold=0.5)`: every request traced, only those
  slower than 0.5 s kept (none of the benchmark's, so it stores nothing);
- ``otel``: OpenTelemetry's FastAPI instrumentation, spans to an in-memory exporter.
"""

SAMPLE_RATE = 0.01
MAX_TRACES = 1000
SLOW_THRESHOLD = 0.5


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
    "real": Endpoint(
        "real",
        _realapp.PATH,
        _realapp.expected_body(),
        f"BaseHTTPMiddleware, yield dependency, {_realapp.QUERIES} queries to a DB process",
    ),
}

NEEDS_DB = frozenset({"real"})
"""Endpoints that query the fake database (`_fakedb`): the app needs its port."""
SELF_CONTAINED = tuple(name for name in ENDPOINTS if name not in NEEDS_DB)
"""The endpoints served when none are named (the soak's, and the servers' default)."""

SUSPEND_PATH = "/suspend"
"""The per-suspension microbenchmark route: ``await asyncio.sleep(0)`` N times."""

TRACES_PATH = "/bench-traces"
"""How many traces (or OpenTelemetry spans) the served variant made: proves it really traced."""

RESET_PATH = "/bench-reset"
"""Clears the otel variant's in-memory exporter (a no-op for the others): called before each
HTTP round, so that the spans of earlier rounds do not weigh on the next."""


def build_app(
    endpoints: Iterable[str] = SELF_CONTAINED, suspensions: int = 0, db_port: int | None = None
) -> FastAPI:
    """Build the FastAPI app with the benchmark endpoints asked for.

    Args:
        endpoints: Names from `ENDPOINTS` to route.
        suspensions: When positive, also route `SUSPEND_PATH`, which awaits
            ``asyncio.sleep(0)`` that many times.
        db_port: The fake database's port on 127.0.0.1 (needed by `NEEDS_DB`).

    Raises:
        ValueError: an endpoint name is unknown, or one needs the database and there is
            no *db_port*.
    """
    wanted = set(endpoints)
    unknown = wanted - set(ENDPOINTS)
    if unknown:
        raise ValueError(f"unknown endpoints: {', '.join(sorted(unknown))}")
    if wanted & NEEDS_DB and db_port is None:
        raise ValueError(f"{', '.join(sorted(wanted & NEEDS_DB))} needs --db-port")
    app = FastAPI()

    if "real" in wanted and db_port is not None:
        # Mounted: its BaseHTTPMiddleware wraps this endpoint only, not the others.
        app.mount("/real", _realapp.build_real_app(db_port))

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


def missing_variant(variant: str) -> str | None:
    """Why *variant* cannot be measured here, or ``None`` when it can."""
    if variant not in VARIANTS:
        return f"unknown variant {variant!r} (expected one of {', '.join(VARIANTS)})"
    if variant == "otel":
        try:
            for module in ("opentelemetry.sdk.trace", "opentelemetry.instrumentation.fastapi"):
                importlib.import_module(module)
        except ImportError as exc:
            return f"{exc} (pip install -e '.[bench]' brings opentelemetry-instrumentation-fastapi)"
    return None


def make_tracer(variant: str, max_events: int | None = None) -> Tracer | None:
    """The asgitrace tracer a variant uses, or ``None`` (``untraced`` and ``otel``).

    Args:
        variant: One of `VARIANTS`.
        max_events: Per-trace event cap, when the default (10 000) could drop events.
    """
    if variant not in VARIANTS:
        raise ValueError(missing_variant(variant))
    if variant in ("untraced", "otel"):
        return None
    options: dict[str, Any] = {"max_traces": MAX_TRACES}
    if max_events is not None:
        options["max_events"] = max_events
    if variant == "sampled":
        options["sample_rate"] = SAMPLE_RATE
    elif variant == "slow":
        options["slow_threshold"] = SLOW_THRESHOLD
    return Tracer(**options)


class Variant:
    """One variant of the app: the ASGI app to call and what it recorded.

    Build it with `instrument`. ``stored()`` counts what the variant made: traces in the
    asgitrace ring, or spans the OpenTelemetry exporter received since the start (the
    exporter is cleared by ``reset()``, its spans still counted).
    """

    def __init__(self, name: str, app: ASGIApp, tracer: Tracer | None, exporter: Any) -> None:
        self.name = name
        self.app = app
        self.tracer = tracer
        self.exporter = exporter
        self._cleared = 0

    def stored(self) -> int:
        """Traces in the tracer's ring, or spans finished so far (0 when untraced)."""
        if self.tracer is not None:
            return len(self.tracer.traces)
        if self.exporter is not None:
            return self._cleared + len(self.exporter.get_finished_spans())
        return 0

    def reset(self) -> None:
        """Empty the in-memory span exporter, which grows without bound (otel only)."""
        if self.exporter is not None:
            self._cleared += len(self.exporter.get_finished_spans())
            self.exporter.clear()


def instrument(variant: str, app: FastAPI, max_events: int | None = None) -> Variant:
    """Wrap or instrument *app* as *variant* says (see `VARIANTS`).

    The otel variant instruments *app* in place, with a tracer provider of its own (the
    global one is left alone) whose spans go to an `InMemorySpanExporter` through a
    `SimpleSpanProcessor`: the whole OpenTelemetry path per request, no network.

    Raises:
        ValueError: the variant is unknown.
        ImportError: the otel variant without OpenTelemetry's FastAPI instrumentation.
    """
    if variant == "otel":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
        return Variant(variant, app, None, exporter)
    tracer = make_tracer(variant, max_events=max_events)
    return Variant(variant, wrap(app, tracer), tracer, None)


def wrap(app: ASGIApp, tracer: Tracer | None) -> ASGIApp:
    """Wrap *app* in `TraceMiddleware` when there is a tracer, else return it unchanged."""
    if tracer is None:
        return app
    return TraceMiddleware(app, tracer=tracer)


def add_bench_routes(app: FastAPI, variant: Variant) -> None:
    """Add `TRACES_PATH` (how many traces or spans *variant* made) and `RESET_PATH`."""

    @app.get(TRACES_PATH)
    async def stored_traces() -> dict[str, int]:
        return {"traces": variant.stored()}

    @app.get(RESET_PATH)
    async def reset() -> dict[str, bool]:
        variant.reset()
        return {"reset": True}
