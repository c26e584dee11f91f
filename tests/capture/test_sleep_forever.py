"""A wait with no deadline woken early (anyio's ``sleep_forever`` is ``asyncio.sleep(inf)``).

Found by running Starlette's own suite traced: the resume lag was computed from a timer due
at ``inf`` and ``int(-inf)`` raised, which switched the stepper off for the request.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx
import pytest

from asgitrace import Tracer, instrument


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().call_soon(task.cancel)  # as a cancel scope would
    try:
        await asyncio.sleep(math.inf)
    except asyncio.CancelledError:
        task.uncancel() if hasattr(task, "uncancel") else None
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"woken"})


async def test_a_sleep_forever_woken_by_a_cancel_resumes_with_no_lag(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracer = Tracer()
    transport = httpx.ASGITransport(app=instrument(app, tracer=tracer))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/")
    assert response.content == b"woken"
    assert caplog.records == []  # the stepper did not fail and switch itself off
    trace = tracer.last
    assert trace is not None
    [wait] = [e for e in trace.awaits() if e.get("target") == "asyncio.sleep(math.inf)"]
    [resumed] = [e for e in trace.of_kind("resumed") if e.seq > wait.seq][:1]
    assert resumed.get("lag_ns") == 0
