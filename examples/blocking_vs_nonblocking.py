"""Blocking vs. non-blocking: the tutorial's question, answered by two timelines.

The tutorial asks what changes when ``await asyncio.sleep(1)`` becomes ``time.sleep(1)``.
This script sends three requests at once to each version and prints a timeline of each
(one lane per request, on one time axis), then the execution table of one blocking request.

What to look at:

* ``GET /wait``: the three lanes overlap. Each request runs for a moment (``█``), then
  waits (``─``) while the event loop serves the others: three requests take about one
  sleep in all.
* ``GET /wait-blocking``: the lanes form a staircase. ``time.sleep`` holds the loop
  (``▓``), so the second request cannot even start until the first is done: three
  requests take three sleeps.
* The execution table's ``⚠ Block the event loop`` row names the ``time.sleep`` line, and
  the key moments say that no other request could run meanwhile.

Run it with ``python examples/blocking_vs_nonblocking.py`` (needs
``pip install "asgitrace[demo]"``). Requests go in-process through
``httpx.ASGITransport``. ``ASGITRACE_EXAMPLE_DELAY`` sets the sleep (seconds, default 1.0).
"""

from __future__ import annotations

import asyncio
import os
import time

import httpx
from fastapi import FastAPI
from rich.console import Console

from asgitrace import THEME, Timeline, TraceMiddleware, Tracer, print_trace

DELAY = float(os.environ.get("ASGITRACE_EXAMPLE_DELAY", "1.0"))

app = FastAPI()


@app.get("/wait")
async def wait_endpoint() -> dict[str, str]:
    await asyncio.sleep(DELAY)  # suspends this request: the loop serves the others
    return {"message": "Done waiting"}


@app.get("/wait-blocking")
async def blocking_endpoint() -> dict[str, str]:
    time.sleep(DELAY)  # the mistake: holds the event loop, nothing else runs
    return {"message": "Done waiting"}


# A step that holds the loop for half the sleep or more is reported as `blocked`.
tracer = Tracer(blocking_threshold=DELAY / 2)
app.add_middleware(TraceMiddleware, tracer=tracer)


async def three_at_once(client: httpx.AsyncClient, path: str) -> float:
    tracer.clear()
    start = time.perf_counter()
    await asyncio.gather(*(client.get(path) for _ in range(3)))
    return time.perf_counter() - start


async def main() -> None:
    console = Console(theme=THEME)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for path in ("/wait", "/wait-blocking"):
            took = await three_at_once(client, path)
            console.print(f"\nThree requests to GET {path} at once took {took:.3f} s\n")
            console.print(Timeline(tracer.traces))
    blocked = tracer.last
    assert blocked is not None, "the request was not traced"
    assert blocked.blocking(), "time.sleep should have blocked the event loop"
    console.print()
    print_trace(blocked, console)


if __name__ == "__main__":
    asyncio.run(main())
