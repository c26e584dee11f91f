"""BaseHTTPMiddleware and child tasks: the request's work spread over several tasks.

Two things move work off the request's own task:

* ``@app.middleware("http")`` (Starlette's ``BaseHTTPMiddleware``) runs the rest of the
  app, endpoint included, in a *child task*, and hands the response back through a
  memory stream;
* the endpoint itself starts child tasks: ``asyncio.gather`` runs ``load_user`` and
  ``load_orders`` concurrently, each in a task of its own.

asgitrace follows every task created while the request is traced, so all of them belong
to this request's trace.

What to look at:

* the list of tasks printed first: the request's task, the middleware's child, and the
  two tasks ``asyncio.gather`` spawned, each with its parent;
* the execution table: steps run in a child task are marked as such, the two loads
  overlap (both are awaiting at once), and the response goes out through the
  middleware;
* the ``x-elapsed-ms`` header the middleware added, in the response line.

Run it with ``python examples/middleware_and_child_tasks.py`` (needs
``pip install "asgitrace[demo]"``). ``ASGITRACE_EXAMPLE_DELAY`` sets the length of each
load (seconds, default 1.0).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import httpx
from fastapi import FastAPI, Request, Response

from asgitrace import TraceMiddleware, Tracer, print_trace

DELAY = float(os.environ.get("ASGITRACE_EXAMPLE_DELAY", "1.0"))

app = FastAPI()


@app.middleware("http")
async def add_elapsed_header(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start = time.perf_counter()
    response = await call_next(request)  # the endpoint runs in a child task meanwhile
    response.headers["x-elapsed-ms"] = f"{(time.perf_counter() - start) * 1000:.1f}"
    return response


async def load_user(user_id: int) -> dict[str, object]:
    await asyncio.sleep(DELAY)
    return {"id": user_id, "name": "Ada"}


async def load_orders(user_id: int) -> list[int]:
    await asyncio.sleep(DELAY)
    return [101, 102]


@app.get("/dashboard/{user_id}")
async def dashboard(user_id: int) -> dict[str, object]:
    user, orders = await asyncio.gather(load_user(user_id), load_orders(user_id))
    return {"user": user, "orders": orders}


tracer = Tracer()
# Added last, so it is outermost: the trace starts before BaseHTTPMiddleware runs.
app.add_middleware(TraceMiddleware, tracer=tracer)


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/dashboard/7")
    response.raise_for_status()
    print(
        f"GET /dashboard/7 answered {response.status_code} "
        f"(x-elapsed-ms: {response.headers['x-elapsed-ms']}) {response.json()}\n"
    )

    trace = tracer.last
    assert trace is not None, "the request was not traced"
    print(f"The request's own task: {trace.task.name}. The tasks it led to:")
    for spawned in trace.of_kind("spawned"):
        parent = spawned.get("parent")
        print(f"  {spawned.get('coro')}() in {spawned.task.name}, started by {parent.name}")
    print()
    print_trace(trace)


if __name__ == "__main__":
    asyncio.run(main())
