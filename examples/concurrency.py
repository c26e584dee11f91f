"""Concurrency in a real server: five requests at once to uvicorn on 127.0.0.1.

The tutorial's endpoint, served by uvicorn (on the loopback address, a free port) and
requested five times at once over real HTTP. One event loop serves them all.

What to look at:

* the timeline: five lanes that overlap almost completely. Each request runs for a
  fraction of a millisecond (``█``), then waits (``─``) on ``asyncio.sleep`` while the
  loop runs the others; all five finish after about one sleep, not five;
* the execution table of the last request: step "Event loop runs other tasks" says how
  many steps of how many other requests the loop ran while this one was asleep;
* "Loop lag" in the key moments, if any: how late the loop was to resume a request whose
  sleep was over, because it was busy with another.

Run it with ``python examples/concurrency.py`` (needs ``pip install "asgitrace[demo]"``).
``ASGITRACE_EXAMPLE_DELAY`` sets the sleep (seconds, default 1.0).
"""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import uvicorn
from fastapi import FastAPI
from rich.console import Console

from asgitrace import THEME, Timeline, TraceMiddleware, Tracer, print_trace

DELAY = float(os.environ.get("ASGITRACE_EXAMPLE_DELAY", "1.0"))
REQUESTS = 5

app = FastAPI()


@app.get("/wait")
async def wait_endpoint() -> dict[str, str]:
    await asyncio.sleep(DELAY)
    return {"message": "Done waiting"}


tracer = Tracer()
app.add_middleware(TraceMiddleware, tracer=tracer)


async def main() -> None:
    # port=0: the system picks a free port; 127.0.0.1: reachable from this machine only.
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            start = time.perf_counter()
            responses = await asyncio.gather(*(client.get("/wait") for _ in range(REQUESTS)))
            took = time.perf_counter() - start
    finally:
        server.should_exit = True
        await serving
    assert all(r.status_code == 200 for r in responses)

    console = Console(theme=THEME)
    console.print(
        f"{REQUESTS} requests to GET /wait (asyncio.sleep({DELAY:g})) took {took:.3f} s"
        f" through uvicorn on 127.0.0.1:{port}\n"
    )
    console.print(Timeline(tracer.traces))
    console.print()
    last = tracer.last
    assert last is not None, "the requests were not traced"
    print_trace(last, console)


if __name__ == "__main__":
    asyncio.run(main())
