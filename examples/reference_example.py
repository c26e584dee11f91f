"""The tutorial's reference example, traced: one ``GET /wait`` that awaits ``asyncio.sleep(1)``.

Run it with ``python examples/reference_example.py`` (needs ``pip install "asgitrace[demo]"``).

What to look at in the table it prints:

* the ``+ms`` column: ``received`` at about 0 ms, then nothing for the whole sleep, then
  ``sent`` (``http.response.start, 200`` and the 26-byte JSON body) and ``completed``;
  the gap between them is the time the handler spent suspended at its ``await``, while the
  event loop was free to serve other requests;
* the ``task`` column: the whole request is served by a single asyncio task.

The request never touches the network: httpx calls the app in-process through
``httpx.ASGITransport``. Set ``ASGITRACE_EXAMPLE_DELAY`` (seconds, default 1.0) to change
the sleep; the test suite runs this file with a short delay.
"""

from __future__ import annotations

import asyncio
import os

import httpx
from fastapi import FastAPI

from asgitrace import TraceMiddleware, Tracer, print_trace

DELAY = float(os.environ.get("ASGITRACE_EXAMPLE_DELAY", "1.0"))

app = FastAPI()


@app.get("/wait")
async def wait_endpoint() -> dict[str, str]:
    await asyncio.sleep(DELAY)
    return {"message": "Done waiting"}


tracer = Tracer()
app.add_middleware(TraceMiddleware, tracer=tracer)


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/wait")
    response.raise_for_status()
    print(f"GET /wait answered {response.status_code} {response.json()}\n")

    trace = tracer.last
    assert trace is not None, "the request was not traced"
    print_trace(trace)


if __name__ == "__main__":
    asyncio.run(main())
