"""What a stored trace costs in memory, and that a full ring costs the GC nothing."""

from __future__ import annotations

import gc
import sys
from typing import Any

import httpx

from asgitrace import Tracer, instrument
from asgitrace.cli._demo import reference_app

STORED_BUDGET = 4096
"""Bytes one stored trace of the reference example may take (issue 8)."""


async def serve_reference(tracer: Tracer, requests: int = 1) -> None:
    app = instrument(reference_app(delay=0.001), tracer=tracer)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for _ in range(requests):
            response = await client.get("/wait", headers={"authorization": "Bearer secret"})
            assert response.json() == {"message": "Done waiting"}


def stored(tracer: Tracer) -> list[Any]:
    return list(tracer._store)


async def test_the_reference_example_is_stored_in_at_most_4_kb() -> None:
    tracer = Tracer()
    await serve_reference(tracer)

    [record] = stored(tracer)
    assert isinstance(record, bytes)  # one object, whatever the trace holds
    assert sys.getsizeof(record) <= STORED_BUDGET
    # ... and it is the whole trace, secrets redacted before storing.
    trace = tracer.last
    assert trace is not None
    kinds = [e.kind.value for e in trace.events]
    assert (kinds[0], kinds[-1]) == ("received", "completed")
    assert {"awaiting", "yielded", "resumed", "sent"} <= set(kinds)
    assert ("authorization", "[redacted]") in trace.headers
    assert b"secret" not in record


async def test_a_full_ring_holds_nothing_the_garbage_collector_tracks() -> None:
    tracer = Tracer(max_traces=20)
    await serve_reference(tracer, requests=25)

    records = stored(tracer)
    assert len(records) == 20
    assert not any(gc.is_tracked(r) for r in records)


async def test_a_finished_request_is_not_kept_alive_by_contexts_copied_during_it() -> None:
    # uvicorn schedules its keep-alive timer from inside the last `send`: the timer's
    # copied context names the request's recorder, and a cancelled timer stays in the
    # loop's heap for a while. The recorder must not keep the request alive through it.
    import asyncio
    import weakref

    class Marker:
        pass

    held: list[Any] = []
    markers: list[weakref.ref[Marker]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        marker = Marker()
        markers.append(weakref.ref(marker))
        scope["state"] = {"marker": marker}  # what frameworks hang on the scope
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def server_send(message: Any) -> None:
        if message["type"] == "http.response.body":
            timer = asyncio.get_running_loop().call_later(60, lambda: None)
            timer.cancel()
            held.append(timer)  # as the loop's heap would, until it is cleaned up

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    tracer = Tracer()
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    await instrument(app, tracer=tracer)(scope, receive, server_send)
    del scope

    assert tracer.last is not None
    assert tracer.last.status == 200
    assert held
    assert markers
    gc.collect()
    assert markers[0]() is None


def test_the_loop_monitor_keeps_its_step_ring_as_plain_ints() -> None:
    # A tuple per step would stay tracked by the garbage collector until the next
    # collection: young collections several times as frequent under load.
    from asgitrace.capture._loopmon import LoopMonitor

    mon = LoopMonitor(10**9)
    for _ in range(5):
        assert mon.begin(None, None)
        mon.end(True)
    assert mon.steps == 5
    assert all(type(item) is int for item in mon.ring)
