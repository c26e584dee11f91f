"""What a stored trace costs in memory, and that a full ring costs the GC nothing."""

from __future__ import annotations

import gc
import sys
from typing import Any

import httpx

from asgitrace import Tracer, instrument
from asgitrace._demo import reference_app

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
