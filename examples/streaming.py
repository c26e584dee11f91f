"""Streaming: a response sent in pieces, with the handler suspended between them.

A ``StreamingResponse`` over an async generator: the status and headers go out first,
then each chunk as the generator yields it, with an ``await asyncio.sleep`` before each.

What to look at:

* the execution table: "ASGI server sends response (200)" comes first, then one
  "Send response body" row per chunk, each with its size;
* between the chunks, the await inside the generator (``countdown``): the request is
  suspended there and the event loop is free, as at any other await;
* the client side: the chunks arrive one by one, printed with their arrival times (the
  app is served by uvicorn on 127.0.0.1, so the client reads them off a real socket).

Run it with ``python examples/streaming.py`` (needs ``pip install "asgitrace[demo]"``).
``ASGITRACE_EXAMPLE_DELAY`` sets the pause before each chunk (seconds, default 1.0).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from asgitrace import TraceMiddleware, Tracer, print_trace

DELAY = float(os.environ.get("ASGITRACE_EXAMPLE_DELAY", "1.0"))

app = FastAPI()


async def countdown(start: int) -> AsyncIterator[bytes]:
    for n in range(start, 0, -1):
        await asyncio.sleep(DELAY)  # the handler is suspended here between two chunks
        yield f"{n}...\n".encode()
    yield b"liftoff\n"


@app.get("/stream")
async def stream() -> StreamingResponse:
    return StreamingResponse(countdown(3), media_type="text/plain")


tracer = Tracer()
app.add_middleware(TraceMiddleware, tracer=tracer)


async def main() -> None:
    # port=0: the system picks a free port; 127.0.0.1: reachable from this machine only.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            start = time.perf_counter()
            async with client.stream("GET", "/stream") as response:
                async for chunk in response.aiter_raw():
                    at = (time.perf_counter() - start) * 1000
                    print(f"{at:8.1f} ms  received {chunk!r}")
    finally:
        server.should_exit = True
        await serving
    print()

    trace = tracer.last
    assert trace is not None, "the request was not traced"
    bodies = [e for e in trace.of_kind("sent") if e.get("type") == "http.response.body"]
    print(f"GET /stream sent its body in {len(bodies)} messages\n")
    print_trace(trace)


if __name__ == "__main__":
    asyncio.run(main())
