"""Tracer: validation, the bounded store, slow-only retention, callbacks, scope decisions."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from asgitrace import EventKind, Redactor, Trace, Tracer, instrument
from asgitrace.testing import capture_traces


def finish(tracer: Tracer, scope: dict[str, Any], *, status: int = 200) -> Trace:
    """Open and close a recorder synchronously, as the middleware would for a request."""
    return tracer.recorder(scope, None).finish(EventKind.COMPLETED, {"status": status})


def paths(traces: list[Trace]) -> list[str]:
    return [t.path for t in traces]


# --- Validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_traces": -1}, "max_traces must be >= 0, got -1"),
        ({"sample_rate": -0.1}, "sample_rate must be between 0.0 and 1.0, got -0.1"),
        ({"sample_rate": 1.5}, "sample_rate must be between 0.0 and 1.0, got 1.5"),
        ({"sample_rate": math.nan}, "sample_rate must be between 0.0 and 1.0, got nan"),
        ({"max_events": 0}, "max_events must be >= 1, got 0"),
        ({"slow_threshold": -0.5}, "slow_threshold must be >= 0 seconds, got -0.5"),
        ({"blocking_threshold": 0}, "blocking_threshold must be > 0 seconds, got 0"),
        ({"blocking_threshold": -1.0}, "blocking_threshold must be > 0 seconds, got -1.0"),
    ],
)
def test_invalid_options_are_rejected_with_a_message_naming_them(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Tracer(**options)


@pytest.mark.parametrize(
    "options",
    [
        {"max_traces": 0},
        {"sample_rate": 0.0},
        {"sample_rate": 1.0},
        {"max_events": 1},
        {"slow_threshold": 0.0},
        {"blocking_threshold": 1e-6},
    ],
)
def test_boundary_options_are_accepted(options: dict[str, Any]) -> None:
    tracer = Tracer(**options)

    name, value = next(iter(options.items()))
    assert getattr(tracer, name) == value


def test_repr_shows_sampling_and_fill_level(scope: Any) -> None:
    tracer = Tracer(max_traces=4, sample_rate=0.5)
    finish(tracer, scope())

    assert repr(tracer) == "<Tracer sample_rate=0.5 traces=1/4>"


# --- The ring of stored traces ------------------------------------------------------------------


def test_store_is_a_ring_that_drops_the_oldest_trace(scope: Any) -> None:
    tracer = Tracer(max_traces=3)

    for index in range(5):
        finish(tracer, scope(f"/{index}"))

    assert paths(tracer.traces) == ["/2", "/3", "/4"]
    assert tracer.last is not None
    assert tracer.last.path == "/4"
    assert tracer.max_traces == 3


def test_traces_is_a_copy_of_the_store(scope: Any) -> None:
    tracer = Tracer()
    finish(tracer, scope("/kept"))

    tracer.traces.clear()

    assert paths(tracer.traces) == ["/kept"]


def test_clear_forgets_every_trace(scope: Any) -> None:
    tracer = Tracer()
    finish(tracer, scope("/a"))
    finish(tracer, scope("/b"))

    tracer.clear()

    assert (tracer.traces, tracer.last) == ([], None)


def test_empty_tracer_has_no_last_trace() -> None:
    assert (Tracer().traces, Tracer().last) == ([], None)


def test_zero_capacity_stores_nothing_but_still_calls_back(scope: Any) -> None:
    seen: list[str] = []
    tracer = Tracer(max_traces=0, on_trace=lambda t: seen.append(t.path))

    finish(tracer, scope("/only-callback"))

    assert (tracer.traces, tracer.last, tracer.max_traces) == ([], None, 0)
    assert seen == ["/only-callback"]


# --- Events per trace ---------------------------------------------------------------------------


async def test_events_past_max_events_are_counted_and_the_end_is_kept(
    scope: Any, fake_server: Any
) -> None:
    tracer = Tracer(max_events=5)

    async def chatty(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        for _ in range(9):
            await send({"type": "http.response.body", "body": b".", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    server = fake_server()
    await instrument(chatty, tracer=tracer)(scope(), server.receive, server.send)

    assert server.body == b"." * 9
    trace = tracer.traces[0]
    # 12 events before the end: the arrival, the start and 10 body messages.
    assert (len(trace.events), trace.dropped) == (5 + 1, 12 - 5)
    assert trace.kinds[-1] == EventKind.COMPLETED
    assert (trace.outcome, trace.status) == ("completed", 200)
    assert trace.to_dict()["dropped"] == 7


def test_terminal_event_fits_even_when_the_cap_is_reached(scope: Any) -> None:
    tracer = Tracer(max_events=1)
    rec = tracer.recorder(scope(), None)
    rec.add(EventKind.RECEIVED, {"type": "http"})
    rec.add(EventKind.SENT, {"type": "http.response.start", "status": 200})

    trace = rec.finish(EventKind.FAILED, {"exception": "ValueError", "status": 200})

    assert trace.kinds == (EventKind.RECEIVED, EventKind.FAILED)
    assert trace.dropped == 1
    assert trace.exception == "ValueError"


# --- Slow-only retention --------------------------------------------------------------------


async def test_slow_threshold_keeps_only_requests_that_took_at_least_that_long(
    scope: Any, fake_server: Any, clock: Any
) -> None:
    kept: list[str] = []
    tracer = Tracer(slow_threshold=0.25, clock=clock, on_trace=lambda t: kept.append(t.path))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        clock.advance(float(scope["path"].strip("/")))
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"ok"})

    traced = instrument(app, tracer=tracer)
    for seconds in ("0.1", "0.5", "0.25", "0.249"):
        server = fake_server()
        await traced(scope(f"/{seconds}"), server.receive, server.send)
        assert server.body == b"ok"  # every request is served, traced or not

    assert paths(tracer.traces) == ["/0.5", "/0.25"]
    assert kept == ["/0.5", "/0.25"]
    assert [t.duration for t in tracer.traces] == [0.5, 0.25]


def test_without_slow_threshold_every_trace_is_kept(scope: Any, clock: Any) -> None:
    tracer = Tracer(clock=clock)

    finish(tracer, scope("/instant"))

    assert tracer.traces[0].duration == 0.0


# --- Callbacks ----------------------------------------------------------------------------------


def test_single_callable_on_trace_receives_each_trace(scope: Any) -> None:
    seen: list[Trace] = []
    tracer = Tracer(on_trace=seen.append)

    trace = finish(tracer, scope("/x"))

    assert seen == [trace]
    # Built from the record before it was marshalled: the same trace as the stored one.
    assert seen[0].events == trace.events == tracer.traces[0].events


def test_several_on_trace_callbacks_are_called_in_order(scope: Any) -> None:
    calls: list[str] = []
    tracer = Tracer(on_trace=(lambda t: calls.append("first"), lambda t: calls.append("second")))

    finish(tracer, scope())

    assert calls == ["first", "second"]


def test_added_and_removed_callbacks(scope: Any) -> None:
    seen: list[str] = []
    tracer = Tracer()

    def callback(trace: Trace) -> None:
        seen.append(trace.path)

    tracer.add_callback(callback)
    finish(tracer, scope("/while-added"))
    tracer.remove_callback(callback)
    tracer.remove_callback(callback)  # not registered any more: no error
    finish(tracer, scope("/after-removal"))

    assert seen == ["/while-added"]


def test_capture_traces_collects_inside_the_block_only(scope: Any) -> None:
    tracer = Tracer()
    finish(tracer, scope("/before"))

    with capture_traces(tracer) as captured:
        finish(tracer, scope("/inside"))
        assert paths(captured) == ["/inside"]
    finish(tracer, scope("/after"))

    assert paths(captured) == ["/inside"]


def test_capture_traces_stops_collecting_after_an_error(scope: Any) -> None:
    tracer = Tracer()

    with pytest.raises(KeyError), capture_traces(tracer) as captured:
        raise KeyError("boom")
    finish(tracer, scope("/after"))

    assert captured == []


# --- Which scopes are traced --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope_type", "wanted"),
    [("http", True), ("websocket", True), ("lifespan", False), ("custom", False), (None, False)],
)
def test_only_http_and_websocket_scopes_are_wanted(scope_type: str | None, wanted: bool) -> None:
    assert Tracer().wants({"type": scope_type, "path": "/"}) is wanted


def test_full_sampling_never_draws_a_random_number(scope: Any) -> None:
    def no_draws() -> float:
        raise AssertionError("sample_rate=1.0 must not draw")

    assert Tracer(rng=no_draws).wants(scope()) is True


def test_sampling_compares_each_draw_with_the_rate(scope: Any) -> None:
    draws = iter([0.0, 0.29, 0.3, 0.99])
    tracer = Tracer(sample_rate=0.3, rng=lambda: next(draws))

    assert [tracer.wants(scope()) for _ in range(4)] == [True, True, False, False]


def test_excluded_path_is_decided_before_sampling(scope: Any) -> None:
    def no_draws() -> float:
        raise AssertionError("an excluded path must not draw")

    tracer = Tracer(sample_rate=0.5, exclude_paths=["/health"], rng=no_draws)

    assert tracer.wants(scope("/health")) is False


def test_exclude_paths_keeps_the_rules_it_was_given() -> None:
    rules = ["/health", "/static/*"]

    assert Tracer(exclude_paths=iter(rules)).exclude_paths == tuple(rules)


# --- Opening a recorder -------------------------------------------------------------------------


def test_recorder_redacts_headers_and_query_before_storing(scope: Any) -> None:
    tracer = Tracer()
    rec = tracer.recorder(
        scope(
            "/p",
            query=b"api_key=k&page=2",
            headers=[(b"Authorization", b"Bearer t"), (b"accept", b"*/*")],
        ),
        None,
    )

    trace = rec.finish(EventKind.COMPLETED, {"status": 200})

    assert trace.headers == (("Authorization", "[redacted]"), ("accept", "*/*"))
    assert trace.query == "api_key=[redacted]&page=2"
    assert "Bearer t" not in repr(trace.to_dict())


def test_recorder_without_query_or_headers_stores_empty_ones() -> None:
    rec = Tracer().recorder({"type": "http", "path": "/"}, None)

    trace = rec.finish(EventKind.COMPLETED, {"status": None})

    assert (trace.query, trace.headers, trace.method) == ("", (), None)


def test_recorder_outside_a_task_names_its_task_accordingly(scope: Any) -> None:
    trace = finish(Tracer(), scope())

    assert trace.task.name == "<no task>"


def test_each_trace_outside_a_task_gets_a_distinct_task_identity(scope: Any) -> None:
    tracer = Tracer()

    first, second = finish(tracer, scope()), finish(tracer, scope())

    assert first.task.id != second.task.id


def test_recorder_uses_the_tracer_clock(scope: Any, clock: Any) -> None:
    tracer = Tracer(clock=clock)
    rec = tracer.recorder(scope(), None)
    clock.advance(1.5)
    rec.add(EventKind.SENT, {"type": "http.response.start", "status": 204})
    clock.advance(0.5)

    trace = rec.finish(EventKind.COMPLETED, {"status": 204})

    assert trace.start_ns == clock.now - 2_000_000_000
    assert [e.t_ns - trace.start_ns for e in trace.events] == [1_500_000_000, 2_000_000_000]
    assert (trace.duration_ns, trace.duration) == (2_000_000_000, 2.0)


@pytest.mark.parametrize(
    ("option", "secret", "plain"),
    [
        pytest.param(None, "authorization", "x-custom", id="defaults"),
        pytest.param(True, "authorization", "x-custom", id="true means defaults"),
        pytest.param(["x-custom"], "x-custom", "accept", id="extra names"),
        pytest.param("x-custom", "x-custom", "accept", id="one extra name"),
        pytest.param(False, None, "authorization", id="disabled"),
    ],
)
def test_redact_option_decides_what_is_secret(option: Any, secret: str | None, plain: str) -> None:
    redactor = Tracer(redact=option).redactor

    if secret is not None:
        assert redactor.is_secret(secret) is True
    assert redactor.is_secret(plain) is False


def test_redactor_instance_is_used_as_given() -> None:
    redactor = Redactor(headers=("x-only",), pattern=None)

    assert Tracer(redact=redactor).redactor is redactor
