"""Shared fixtures: a fake clock, a fake ASGI server, scopes, the apps several test files
trace, and a reset of the failure log.

Helpers are handed out through fixtures (the suite runs with ``--import-mode=importlib``,
so test modules cannot import this file).
"""

from __future__ import annotations

import asyncio
import os
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from typing import Any

import blockbuster
import pytest
from fastapi import FastAPI, HTTPException
from hypothesis import HealthCheck, settings

import asgitrace
from asgitrace._support import _log

# The hypothesis profiles of the suite (the property tests in tests/properties/).
# "asgitrace", for CI and every run by default: few examples, reproducible, no example
# database, no deadline on a loaded 2-core machine. "long", chosen with
# HYPOTHESIS_PROFILE=long: 40 times the examples from a random seed (hypothesis prints
# the seed of a failure to reproduce it), which also exhausts the small spaces (the 240
# clock-failure points of test_faults) that the CI profile only samples.
settings.register_profile(
    "asgitrace",
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "long", settings.get_profile("asgitrace"), max_examples=1000, derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "asgitrace"))

Message = dict[str, Any]


def pytest_configure(config: pytest.Config) -> None:
    """With the compiled stepper, its ``.py`` does not run (machine code built from it
    does), so coverage cannot see it: leave that one file out of the report rather than
    count it as untested. The pure-Python run measures it (CI runs both variants), and
    every other file keeps the 95 % bar in both."""
    if not asgitrace.capture.COMPILED:
        return
    controller = getattr(config.pluginmanager.getplugin("_cov"), "cov_controller", None)
    stepper = os.path.join(os.path.dirname(asgitrace.capture.__file__), "_stepper.py")
    # pytest-cov reports from the coverage object that combines the data (`combining_cov`).
    for name in ("cov", "combining_cov"):
        cov = getattr(controller, name, None)
        if cov is not None:
            cov.config.report_omit = [*(cov.config.report_omit or []), stepper]


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


# --- blockbuster: asgitrace never makes a blocking call on a loop thread (issue 16) --------

_ASGITRACE = os.path.dirname(os.path.abspath(asgitrace.__file__)) + os.sep
_SITE = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
_STDLIB = tuple({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
_BLOCKBUSTER = os.path.dirname(os.path.abspath(blockbuster.__file__))


# asgitrace's own calls that block by contract (qualified names), none on the request
# path: the caller asked to write a file or to wait, as `open()` would; the source lines
# of a trace, read (once, through linecache) when the caller first reads its events; a
# failing test assertion's message, which asks the OS for the working directory; a
# failure's one log record, which goes to the app's own logging handlers as any
# library's does; and the demo's app, which blocks the loop on purpose.
_BLOCKS_BY_CONTRACT = frozenset(
    {
        "write_jsonl",
        "read_jsonl",
        "write_perfetto",
        "write_html",
        "Offload.flush",
        "Offload.close",
        "log_failure",
        "short_path",
        "source_line",
        "blocking_app.<locals>.wait_endpoint",
    }
)


def _qualname(code: Any) -> str:
    return str(getattr(code, "co_qualname", code.co_name))  # co_qualname: 3.11+


def blocking_caller(frame: Any) -> str | None:
    """The file of the innermost frame, outside the standard library and blockbuster,
    that led to a blocking call (``None`` when there is none, or for an import: a
    module's first import reads files wherever it happens)."""
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib"):
            return None
        if name.startswith(_ASGITRACE):
            walk = frame
            while walk is not None:
                if _qualname(walk.f_code) in _BLOCKS_BY_CONTRACT:
                    return None
                walk = walk.f_back
        in_stdlib = name.startswith(_STDLIB) and not name.startswith(_SITE)
        if not (in_stdlib or name.startswith(("<", _BLOCKBUSTER))):
            return str(name)
        frame = frame.f_back
    return None


class AsgitraceBlockBuster(blockbuster.BlockBuster):
    """A BlockBuster that raises `BlockingError` when an asgitrace frame makes a blocking
    call (a contended lock, a wait, a sleep, file or socket I/O) on a running loop's thread.

    It lets every other blocking call through: the test apps block the loop on purpose
    (that is what asgitrace shows), and third-party code is not ours to police here.
    Each call it raised on is also kept in `flagged`, since asgitrace's fail-open paths
    may swallow the error.
    """

    def __init__(self) -> None:
        super().__init__(["asgitrace"])
        self.flagged: list[tuple[str, str]] = []
        for name, function in self.functions.items():
            function.can_block_predicate = self._ours_only(name, function.can_block_predicate)

    def _ours_only(self, name: str, original: Callable[..., bool]) -> Callable[..., bool]:
        def can_block(*args: Any, **kwargs: Any) -> bool:
            if original(*args, **kwargs):
                return True
            frame = sys._getframe(1)
            caller = blocking_caller(frame)
            if caller is None or not caller.startswith(_ASGITRACE):
                return True
            while frame.f_code.co_filename != caller:
                frame = frame.f_back
            where = f"{caller}:{frame.f_lineno} in {_qualname(frame.f_code)}"
            self.flagged.append((name, where))
            if os.environ.get("ASGITRACE_DEBUG_BLOCKING"):
                import traceback

                traceback.print_stack(sys._getframe(1), file=sys.__stderr__)
            return False

        return can_block


@pytest.fixture(autouse=True)
def _no_blocking_by_asgitrace() -> Iterator[AsgitraceBlockBuster]:
    """Every test runs with blockbuster active, as Starlette's own suite does; a test
    fails if asgitrace made a blocking call on a loop thread, even a swallowed one."""
    buster = AsgitraceBlockBuster()
    buster.activate()
    try:
        yield buster
    finally:
        buster.deactivate()
    assert buster.flagged == [], f"asgitrace made blocking calls on a loop: {buster.flagged}"


@pytest.fixture
def blockbuster_flags(_no_blocking_by_asgitrace: AsgitraceBlockBuster) -> list[tuple[str, str]]:
    """The calls the suite's blockbuster raised on (a test that expects one empties it)."""
    return _no_blocking_by_asgitrace.flagged


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
def loop_clock(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> Iterator[FakeClock]:
    """The one clock seam of the loop monitor and its watchdog (`_loopmon._clock`), set to
    the suite's fake `clock`; pass the same clock to ``Tracer(clock=...)`` and every time
    the capture layer reads is the test's. The watchdog is a private one that never runs
    as a thread (its `running` lock is taken as if one ran) and is never due, so nothing
    samples or knocks behind the test's back."""
    import asgitrace.capture._loopmon as loopmon

    dog = loopmon._Watchdog()
    dog.running.acquire()
    monkeypatch.setattr(loopmon, "_WATCHDOG", dog)
    monkeypatch.setattr(loopmon, "_clock", clock)
    before = sys.getswitchinterval()
    yield clock
    sys.setswitchinterval(before)


@pytest.fixture
def fake_server() -> type[FakeServer]:
    return FakeServer


@pytest.fixture
def scope() -> Callable[..., dict[str, Any]]:
    return make_scope


@pytest.fixture
def fake_clock_type() -> type[FakeClock]:
    return FakeClock


# -- the apps several test files trace --------------------------------------------------------
# Their endpoints live here, so traces, spans and failure messages point at this file (and
# at names such as `make_app.<locals>.child`): tests read both from the fixtures below.

DELAY = 0.03
SLOW = 0.03
BLOCKING_THRESHOLD = 0.02


def make_app(*, slow_items: bool = False) -> FastAPI:
    """The app the exporter, Perfetto and OpenTelemetry tests trace.

    /wait awaits DELAY; /block holds the loop for SLOW; /gather and /child-fails run child
    tasks (the latter's fails); /yield yields, then waits; /boom, /missing and /crash fail.
    ``/items/{item_id}`` yields once, or with *slow_items* awaits DELAY.
    """
    app = FastAPI()

    async def child(n: int) -> int:
        await asyncio.sleep(0.001 * n)
        if n == 3:
            raise KeyError(n)
        return n

    @app.get("/wait")
    async def wait_endpoint() -> dict[str, str]:
        await asyncio.sleep(DELAY)
        return {"message": "Done waiting"}

    @app.get("/block")
    async def block_endpoint() -> dict[str, str]:
        time.sleep(SLOW)
        return {"message": "Done waiting"}

    @app.get("/gather")
    async def gather_endpoint() -> list[int]:
        return list(await asyncio.gather(child(1), child(2)))

    @app.get("/child-fails")
    async def child_fails() -> str:
        task = asyncio.create_task(child(3))
        await asyncio.wait([task])
        return type(task.exception()).__name__

    @app.get("/yield")
    async def yielder() -> int:
        await asyncio.sleep(0)
        await asyncio.sleep(0.02)
        return 1

    @app.get("/boom")
    async def boom() -> None:
        raise HTTPException(status_code=500, detail="no")

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(status_code=404, detail="no")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("crash")

    if slow_items:

        @app.get("/items/{item_id}")
        async def item(item_id: int) -> dict[str, int]:
            await asyncio.sleep(DELAY)
            return {"item_id": item_id}

    else:

        @app.get("/items/{item_id}")
        async def item(item_id: int) -> dict[str, int]:
            await asyncio.sleep(0)
            return {"item_id": item_id}

    return app


class AppFactory:
    """`make_app` as a fixture hands it out, with the times its endpoints are built around."""

    delay = DELAY  # /wait (and the slow /items) await asyncio.sleep(DELAY)
    slow = SLOW  # /block holds the event loop this long
    blocking_threshold = BLOCKING_THRESHOLD  # below SLOW: /block's step counts as blocking
    source = __file__  # where the endpoints are defined

    def __call__(self, *, slow_items: bool = False) -> FastAPI:
        return make_app(slow_items=slow_items)


def reference_app() -> FastAPI:
    """The README's two endpoints: one awaits 10 ms, the other holds the loop for 120 ms."""
    app = FastAPI()

    @app.get("/wait")
    async def wait_endpoint() -> dict[str, str]:
        await asyncio.sleep(0.01)
        return {"message": "Done waiting"}

    @app.get("/block")
    async def block_endpoint() -> dict[str, str]:
        time.sleep(0.12)
        return {"message": "Done blocking"}

    return app


@pytest.fixture(name="make_app", scope="session")
def make_app_fixture() -> AppFactory:
    return AppFactory()


@pytest.fixture(name="reference_app", scope="session")
def reference_app_fixture() -> Callable[[], FastAPI]:
    return reference_app
