"""A sync endpoint in the thread pool: ``def`` instead of ``async def``.

FastAPI runs a plain ``def`` endpoint in a worker thread (anyio's thread pool), so a
blocking call inside it does not hold the event loop. The same ``time.sleep`` in an
``async def`` endpoint does.

What to look at:

* ``GET /report`` (``def``): the execution table shows "Run report in a worker thread"
  and "Worker thread runs report; event loop runs other tasks": the request waits on the
  thread, the loop stays free. The key moments count the time in the thread pool;
* ``GET /report-async`` (``async def`` with the same ``time.sleep``): a ``⚠ Block the
  event loop`` row names the line, and nothing else could run meanwhile;
* the timing line: two requests at once to the ``def`` endpoint overlap (about one
  sleep); to the ``async def`` one, they take turns (two sleeps).

Run it with ``python examples/sync_endpoint.py`` (needs ``pip install "asgitrace[demo]"``).
``ASGITRACE_EXAMPLE_DELAY`` sets the sleep (seconds, default 1.0).
"""

from __future__ import annotations

import asyncio
import os
import time

import httpx
from fastapi import FastAPI

from asgitrace import TraceMiddleware, Tracer, print_trace

DELAY = float(os.environ.get("ASGITRACE_EXAMPLE_DELAY", "1.0"))

app = FastAPI()


@app.get("/report")
def report() -> dict[str, str]:
    time.sleep(DELAY)  # blocking, but in a worker thread: the event loop is free
    return {"report": "ready"}


@app.get("/report-async")
async def report_async() -> dict[str, str]:
    time.sleep(DELAY)  # the same call on the event loop's thread: it blocks the loop
    return {"report": "ready"}


tracer = Tracer(blocking_threshold=DELAY / 2)
app.add_middleware(TraceMiddleware, tracer=tracer)


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        # A first request pays for one-time work (imports, the thread pool's start) that
        # can itself hold the loop for a few milliseconds: get it out of the way.
        await client.get("/report")
        for path in ("/report", "/report-async"):
            tracer.clear()
            start = time.perf_counter()
            await asyncio.gather(client.get(path), client.get(path))
            took = time.perf_counter() - start
            trace = tracer.last
            assert trace is not None, "the request was not traced"
            # Steps the endpoint itself blocked (a busy machine may add others elsewhere).
            mine = [b for b in trace.blocking() if b.get("function") in ("report", "report_async")]
            verdict = "blocked the event loop" if mine else "left the loop free"
            print(f"Two requests to GET {path} at once took {took:.3f} s: it {verdict}\n")
            print_trace(trace)
            print()


if __name__ == "__main__":
    asyncio.run(main())
