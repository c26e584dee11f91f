"""Fault injection: every extension point and internal probe of asgitrace made to fail.

The property is always the same (fail-open): the app's responses and exceptions are
exactly those of the untraced app, the part that failed stops (or keeps failing
silently), and the `asgitrace` logger says so once per failing part.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import cache
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from hypothesis import given, strategies as st
from rich.console import Console
from starlette.responses import JSONResponse, Response

from asgitrace import Redactor, Trace, Tracer, instrument, print_trace
from asgitrace._support import _log
from asgitrace.capture._accel import MODULE as STEPPER_MODULE
from asgitrace.capture._loopmon import _WATCHDOG, LoopMonitor
from asgitrace.capture._recorder import Recorder
from asgitrace.testing import render_text
from asgitrace.trace.codec import DECODERS

STEPPER = STEPPER_MODULE.__name__

SECRET = "s3cr3t-fault-0b5e"
Outcome = tuple[Any, ...]


class Hostile:
    """A value whose repr fails."""

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class HostileResponse(JSONResponse):
    """A response whose repr fails (an endpoint's return value is repr'd on 3.12+)."""

    def __repr__(self) -> str:
        raise RuntimeError("response repr exploded")


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/wait")
    async def wait(q: str = "") -> dict[str, str]:
        user_data = {"name": "ann", "password": SECRET, "q": q}
        await asyncio.sleep(0)
        return {"q": user_data["q"]}

    @app.get("/children")
    async def children() -> dict[str, Any]:
        async def child(i: int) -> int:
            await asyncio.sleep(0)
            return i * i

        tasks = [asyncio.create_task(child(i), name=f"child-{i}") for i in range(3)]
        names = [t.get_name() for t in tasks]
        return {"results": await asyncio.gather(*tasks), "names": names}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for size in (1, 2, 3):
                await asyncio.sleep(0)
                yield b"x" * size

        return StreamingResponse(chunks())

    @app.get("/error")
    async def error() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("the app's own error")

    @app.get("/hostile")
    async def hostile() -> Response:
        user_data = Hostile()
        await asyncio.sleep(0)
        return HostileResponse({"hostile": True, "local": type(user_data).__name__})

    return app


REQUESTS = [
    ("GET", "/wait?q=1&token=" + SECRET, {"authorization": f"Bearer {SECRET}"}),
    ("GET", "/children", {}),
    ("GET", "/stream", {"cookie": f"session={SECRET}"}),
    ("GET", "/error", {}),
    ("GET", "/hostile", {}),
    ("GET", "/missing", {}),
]


async def exchange(app: Any, requests: list[tuple[str, str, dict[str, str]]]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for method, url, headers in requests:
            try:
                response = await client.request(method, url, headers=headers)
            except Exception as exc:
                outcomes.append(("raised", type(exc).__qualname__, str(exc)))
            else:
                items = response.headers.multi_items()
                outcomes.append(("response", response.status_code, items, response.content))
    return outcomes


def run(app: Any, requests: list[tuple[str, str, dict[str, str]]] = REQUESTS) -> list[Outcome]:
    return asyncio.run(exchange(app, requests))


@cache
def expected_outcomes() -> list[Outcome]:
    """The oracle: the untraced app, on a loop asgitrace never touched."""
    return run(build_app())


class Failures:
    """The ERROR records of the `asgitrace` logger, with a fresh once-per-component log."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def reset(self) -> None:
        _log._reported.clear()
        self.caplog.clear()

    @property
    def messages(self) -> list[str]:
        return [
            r.getMessage()
            for r in self.caplog.records
            if r.name == "asgitrace" and r.levelno >= logging.ERROR
        ]

    def assert_each_logged_once(self, *parts: str) -> None:
        messages = self.messages
        assert len(messages) == len(set(messages)), messages
        for part in parts:
            assert sum(part in m for m in messages) == 1, (part, messages)


@pytest.fixture
def failures(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Failures:
    monkeypatch.setattr(_log, "_reported", set())
    caplog.set_level(logging.WARNING)
    return Failures(caplog)


def assert_nothing_stored_in_clear(tracer: Tracer) -> None:
    for trace in tracer.traces:
        assert SECRET not in json.dumps(trace.to_dict()), trace


# --- Callbacks, sinks and renderers called with finished traces ---------------------------------


class ClosedFileSink:
    """A sink whose file went away: every write raises ``ValueError``."""

    def __init__(self) -> None:
        self.file = io.StringIO()
        self.file.close()

    def __call__(self, trace: Trace) -> None:
        self.file.write(json.dumps(trace.to_dict()) + "\n")


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("terminal went away")


def raising_callback(trace: Trace) -> None:
    raise ValueError("callback exploded")


def broken_renderer(trace: Trace) -> None:
    print_trace(trace, console=Console(file=BrokenStream(), width=80))


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(raising_callback, id="on_trace callback"),
        pytest.param(ClosedFileSink(), id="sink writing to a closed file"),
        pytest.param(broken_renderer, id="renderer writing to a broken stream"),
    ],
)
def test_failing_trace_consumer_is_disabled_after_one_log_line(
    bad: Callable[[Trace], None], failures: Failures
) -> None:
    calls: list[Trace] = []

    def counted(trace: Trace) -> None:
        calls.append(trace)
        bad(trace)

    good: list[Trace] = []
    tracer = Tracer(on_trace=[counted, good.append])

    assert run(instrument(build_app(), tracer=tracer)) == expected_outcomes()
    assert len(calls) == 1  # disabled after its first failure
    assert len(good) == len(REQUESTS)  # the other consumers keep receiving traces
    assert len(tracer.traces) == len(REQUESTS)
    failures.assert_each_logged_once("on_trace callback")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_jsonl_sink_on_a_full_disk_changes_no_response(failures: Failures) -> None:
    from asgitrace import exporters

    try:
        sink = exporters.JsonlSink("/dev/full")  # every write fails with ENOSPC
    except OSError:  # pragma: no cover - a sink may refuse files that are not regular
        pytest.skip("JsonlSink refuses /dev/full")
    tracer = Tracer(on_trace=sink)
    try:
        outcomes = run(instrument(build_app(), tracer=tracer))
        outcomes += run(instrument(build_app(), tracer=tracer))
    finally:
        sink.close()

    assert outcomes == expected_outcomes() * 2
    assert len(tracer.traces) == 2 * len(REQUESTS)
    assert sink.written + sink.dropped == 2 * len(REQUESTS)
    assert sink.dropped >= 1
    failures.assert_each_logged_once("/dev/full")


def test_logging_handler_that_raises_does_not_reach_the_app(failures: Failures) -> None:
    class ExplodingHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("log shipping is down")

    handler = ExplodingHandler()
    logger = logging.getLogger("asgitrace")
    logger.addHandler(handler)
    try:
        outcomes = run(instrument(build_app(), tracer=Tracer(on_trace=raising_callback)))
    finally:
        logger.removeHandler(handler)

    assert outcomes == expected_outcomes()


def test_failing_renderer_falls_back_to_a_plain_event_list(
    failures: Failures, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer = Tracer()
    run(instrument(build_app(), tracer=tracer), REQUESTS[:1])

    def exploding(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr("asgitrace.views.render_trace", exploding)
    text = render_text(tracer.traces[0])
    again = render_text(tracer.traces[0])

    assert text == again
    assert "GET /wait" in text
    assert "completed" in text
    failures.assert_each_logged_once("rendering a trace as text")


def test_failing_event_resolver_leaves_the_event_unresolved(
    failures: Failures, monkeypatch: pytest.MonkeyPatch
) -> None:
    def exploding(raw: tuple[Any, ...], context: Any) -> Any:
        raise RuntimeError("resolver exploded")

    monkeypatch.setitem(DECODERS, "awaiting", exploding)
    tracer = Tracer()
    assert run(instrument(build_app(), tracer=tracer)) == expected_outcomes()

    awaits = [e for t in tracer.traces for e in t.awaits()]
    assert awaits
    assert {dict(e.fields).get("unresolved") for e in awaits} == {"awaiting"}
    failures.assert_each_logged_once("resolving event details")


# --- Redaction hooks --------------------------------------------------------------------------


def raising_redactor(*methods: str) -> Redactor:
    def exploding(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("redaction hook exploded")

    cls = type("RaisingRedactor", (Redactor,), dict.fromkeys(methods, exploding))
    redactor: Redactor = cls()
    return redactor


REDACTOR_METHODS = ["raw_headers_of", "headers_of", "query_of", "is_secret", "value_of", "repr_of"]


@pytest.mark.parametrize(
    "methods",
    [pytest.param((m,), id=m) for m in REDACTOR_METHODS if m != "is_secret"]
    + [
        pytest.param(("is_secret",), id="is_secret"),
        pytest.param(tuple(REDACTOR_METHODS), id="all"),
    ],
)
def test_redactor_whose_methods_raise_changes_no_response_and_stores_no_secret(
    methods: tuple[str, ...], failures: Failures
) -> None:
    tracer = Tracer(redact=raising_redactor(*methods), watch=["user_data"])

    assert run(instrument(build_app(), tracer=tracer)) == expected_outcomes()
    assert_nothing_stored_in_clear(tracer)
    messages = failures.messages
    assert len(messages) == len(set(messages)), messages  # each failing part logs once
    if methods != ("headers_of",):  # not called while capturing
        assert messages


def test_redactor_whose_response_header_redaction_raises_still_records_the_request(
    failures: Failures,
) -> None:
    class ResponseSideRaising(Redactor):
        def raw_headers_of(self, raw: Any) -> Any:
            if any(name == b"content-type" for name, _ in raw or ()):
                raise RuntimeError("response headers exploded")
            return super().raw_headers_of(raw)

    tracer = Tracer(redact=ResponseSideRaising())

    assert run(instrument(build_app(), tracer=tracer)) == expected_outcomes()
    assert len(tracer.traces) == len(REQUESTS)
    assert all(t.response_headers == () for t in tracer.traces)
    assert_nothing_stored_in_clear(tracer)
    failures.assert_each_logged_once("recording a sent message")


class NotARedactor:
    """Looks like a redactor, is not one: a configuration error."""

    def is_secret(self, name: str) -> bool:
        raise RuntimeError("never called")


class ExplodingNames:
    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("names exploded")


@pytest.mark.parametrize(
    ("option", "error"),
    [(NotARedactor(), TypeError), (ExplodingNames(), RuntimeError)],
    ids=["not a redactor", "names that raise"],
)
def test_invalid_redact_option_fails_at_configuration_not_at_request_time(
    option: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        Tracer(redact=option)


# --- The capture probes: task hook, stepper, loop monitor, clock ---------------------------------


def exploding(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("probe exploded")


@pytest.mark.parametrize(
    ("target", "component"),
    [
        pytest.param("asgitrace.capture._taskhook._wrap", "task hook", id="task hook"),
        pytest.param("asgitrace.capture._middleware.install", "task hook", id="task hook install"),
        # The stepper that runs: `_stepper`, or `_cstepper` when compiled (capture/_accel.py).
        pytest.param(f"{STEPPER}.walk", "coroutine stepper", id="await chain walk"),
        pytest.param(f"{STEPPER}.await_site", "coroutine stepper", id="await site"),
        pytest.param(
            "asgitrace.capture._middleware._record_sent", "recording a sent message", id="send"
        ),
        pytest.param("asgitrace.capture._middleware.message_fields", "recording a", id="messages"),
    ],
)
def test_failing_capture_probe_changes_no_response(
    target: str, component: str, failures: Failures, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target, exploding)
    tracer = Tracer()

    assert run(instrument(build_app(), tracer=tracer)) == expected_outcomes()
    assert run(instrument(build_app(), tracer=tracer)) == expected_outcomes()
    assert failures.messages
    assert all(component in m or "opening a trace" in m for m in failures.messages), (
        failures.messages
    )
    assert len(failures.messages) == len(set(failures.messages))


@pytest.mark.parametrize("method", ["begin", "end"])
def test_failing_step_accounting_changes_no_response(
    method: str, failures: Failures, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LoopMonitor, method, exploding)

    assert run(instrument(build_app(), tracer=Tracer())) == expected_outcomes()
    failures.assert_each_logged_once("coroutine stepper")


def test_one_failure_in_step_accounting_leaves_later_traces_correct(
    failures: Failures, monkeypatch: pytest.MonkeyPatch, loop_clock: Any
) -> None:
    original = LoopMonitor.end
    calls = [0]

    def fails_once(self: LoopMonitor, opened: bool) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("one-off failure")
        original(self, opened)

    monkeypatch.setattr(LoopMonitor, "end", fails_once)
    tracer = Tracer(blocking_threshold=0.05, clock=loop_clock)
    app = instrument(build_app(), tracer=tracer)

    async def main() -> None:
        await exchange(app, REQUESTS[:1])
        # 60 ms pass between two steps: not a blocking step, unless the failed `end`
        # left a step open (a step counts only fake time here, so nothing else can).
        loop_clock.advance(0.06)
        await exchange(app, REQUESTS[:3])

    asyncio.run(main())
    assert [e for t in tracer.traces for e in t.blocking()] == []


def test_failing_recorder_changes_no_response(
    failures: Failures, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Recorder, "add", exploding)

    assert run(instrument(build_app(), tracer=Tracer())) == expected_outcomes()
    failures.assert_each_logged_once("opening a trace")


class FailingClock:
    """A clock that raises from its *fail_at*-th reading on."""

    def __init__(self, fail_at: int, once: bool) -> None:
        self.calls = 0
        self.fail_at = fail_at
        self.once = once

    def __call__(self) -> int:
        self.calls += 1
        if self.calls == self.fail_at or (not self.once and self.calls > self.fail_at):
            raise RuntimeError(f"clock failed at reading {self.calls}")
        return time.perf_counter_ns()


@given(fail_at=st.integers(1, 120), once=st.booleans())
def test_clock_failing_at_any_reading_changes_no_response(
    fail_at: int, once: bool, failures: Failures
) -> None:
    """Every place that reads the clock is a probe: failing at the n-th reading, for any n,
    is invisible to the client."""
    failures.reset()
    tracer = Tracer(clock=FailingClock(fail_at, once))

    assert run(instrument(build_app(), tracer=tracer)) == expected_outcomes()
    assert len(failures.messages) == len(set(failures.messages))
    for trace in tracer.traces:  # the traces that survived are well formed
        assert trace.raw_events[-1][2] in {"completed", "failed", "disconnected"}


def test_failing_app_code_rule_changes_no_response(failures: Failures) -> None:
    def rule(filename: str) -> bool:
        raise RuntimeError("rule exploded")

    tracer = Tracer(app_code=rule)

    assert run(instrument(build_app(), tracer=tracer)) == expected_outcomes()
    assert len(tracer.traces) == len(REQUESTS)
    failures.assert_each_logged_once("app_code rule")


def test_failing_sampler_leaves_requests_untraced(failures: Failures) -> None:
    def rng() -> float:
        raise RuntimeError("rng exploded")

    tracer = Tracer(sample_rate=0.5, rng=rng)

    assert run(instrument(build_app(), tracer=tracer)) == expected_outcomes()
    assert tracer.traces == []
    failures.assert_each_logged_once("opening a trace")


# --- The blocking watchdog thread ------------------------------------------------------------


def test_failing_watchdog_stops_itself_and_blocking_is_still_recorded(
    failures: Failures, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried = threading.Event()
    started: list[float] = []

    def exploding_sample(*args: Any, **kwargs: Any) -> Any:
        if not started:  # a monitor left behind by an earlier test: not ours to break
            return ()
        tried.set()
        raise RuntimeError("stack sampling exploded")

    monkeypatch.setattr("asgitrace.capture._loopmon.sample_stack", exploding_sample)
    app = FastAPI()

    @app.get("/block")
    async def block() -> dict[str, bool]:
        started.append(time.monotonic())
        # Hold the loop until the watchdog has looked at it, and past the threshold.
        while time.monotonic() - started[0] < 5:
            if tried.is_set() and time.monotonic() - started[0] > 0.06:
                break
            time.sleep(0.005)
        return {"sampled": tried.is_set()}

    tracer = Tracer(blocking_threshold=0.05)
    try:
        outcomes = run(instrument(app, tracer=tracer), [("GET", "/block", {})])
        # The thread holds `running` for its whole life: taking it waits for its end.
        stopped = _WATCHDOG.running.acquire(timeout=5)
        if stopped:
            _WATCHDOG.running.release()
    finally:
        monkeypatch.undo()
        LoopMonitor(10**8)  # a new monitor restarts the watchdog for the tests that follow

    assert outcomes == [("response", 200, outcomes[0][2], b'{"sampled":true}')]
    assert stopped
    [blocked] = tracer.traces[0].blocking()
    assert blocked.get("duration_ns") >= 0.05e9
    assert blocked.get("stack") == ()
    failures.assert_each_logged_once("blocking watchdog")
    assert _WATCHDOG.running.locked()  # restarted


# --- sys.monitoring callbacks (3.12+) ----------------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is new in 3.12")
@pytest.mark.parametrize(
    ("target", "component"),
    [
        ("asgitrace.capture._entry._started", "entry callback"),
        ("asgitrace.capture._entry._returned", "return callback"),
    ],
)
def test_failing_monitoring_callback_changes_no_response(
    target: str, component: str, failures: Failures, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(target, exploding)

    assert run(instrument(build_app(), tracer=Tracer())) == expected_outcomes()
    failures.assert_each_logged_once(component)


# --- User values whose repr fails or hangs ----------------------------------------------------


def test_repr_that_raises_is_stored_as_a_placeholder(failures: Failures) -> None:
    tracer = Tracer(watch=["user_data"])

    assert run(instrument(build_app(), tracer=tracer), REQUESTS[4:5]) == expected_outcomes()[4:5]
    [trace] = tracer.traces
    [awaiting] = trace.awaits()
    # User reprs are never called: objects are stored by type, responses by status.
    assert awaiting.get("watched")["user_data"] == f"<{Hostile.__module__}.Hostile object>"
    for returned in trace.of_kind("returned"):  # 3.12+
        assert returned.get("value").startswith("HostileResponse(status_code=")
    assert len(failures.messages) <= 1


class SlowRepr:
    """A value whose repr could take far longer than the request it is in (a database
    query, a lock): asgitrace must never call it on the request's path. It counts its
    calls rather than hanging, so a regression shows as a wrong count, not a slow suite."""

    calls = 0

    def __repr__(self) -> str:
        SlowRepr.calls += 1
        return "SlowRepr()"


def test_repr_that_hangs_does_not_stall_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SlowRepr, "calls", 0)
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        user_data = SlowRepr()
        await asyncio.sleep(0)
        return {"ok": user_data is not None}

    expected = run(app, [("GET", "/slow", {})])
    tracer = Tracer(watch=["user_data"])
    outcomes = run(instrument(app, tracer=tracer), [("GET", "/slow", {})])

    assert outcomes == expected
    assert SlowRepr.calls == 0
    assert len(tracer.traces) == 1


@pytest.mark.skipif(sys.version_info < (3, 12), reason="return values are captured on 3.12+")
def test_returned_value_with_a_hanging_repr_does_not_stall_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(SlowRepr, "calls", 0)

    class SlowResponse(JSONResponse):
        def __repr__(self) -> str:
            return repr(SlowRepr())

    app = FastAPI()

    @app.get("/slow")
    async def slow() -> Response:
        return SlowResponse({"ok": True})

    expected = run(app, [("GET", "/slow", {})])
    tracer = Tracer()
    outcomes = run(instrument(app, tracer=tracer), [("GET", "/slow", {})])

    assert outcomes == expected
    assert SlowRepr.calls == 0
    assert len(tracer.traces) == 1
