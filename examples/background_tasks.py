"""Background tasks: work that runs after the response was sent.

FastAPI's ``BackgroundTasks`` run once the response is complete, in the same request
task: the client has its answer and does not wait, but the server's task is not done.

What to look at:

* the first line: the response was sent after a few milliseconds, the request's task
  finished only after the email was "sent";
* the execution table: rows marked ``(after response)`` come after "ASGI server sends
  response": the background ``send_welcome_email`` runs, awaits its own sleep and
  finishes, all after the client was answered;
* the key moments: how much work happened after the response. The trace's duration
  covers it; the client's wait, in a real server, does not.

Run it with ``python examples/background_tasks.py`` (needs ``pip install "asgitrace[demo]"``).
``ASGITRACE_EXAMPLE_DELAY`` sets how long the email takes (seconds, default 1.0).
"""

from __future__ import annotations

import asyncio
import os
import time

import httpx
from fastapi import BackgroundTasks, FastAPI

from asgitrace import TraceMiddleware, Tracer, print_trace

DELAY = float(os.environ.get("ASGITRACE_EXAMPLE_DELAY", "1.0"))

app = FastAPI()
outbox: list[str] = []


async def send_welcome_email(address: str) -> None:
    await asyncio.sleep(DELAY)  # talking to a mail server
    outbox.append(address)


@app.post("/signup")
async def signup(address: str, background_tasks: BackgroundTasks) -> dict[str, str]:
    background_tasks.add_task(send_welcome_email, address)
    return {"status": "welcome!"}


tracer = Tracer()
app.add_middleware(TraceMiddleware, tracer=tracer)


async def main() -> None:
    # In a real server the client gets its answer as soon as the body is sent. httpx's
    # in-process transport returns only when the app is done, so watch the server side:
    # the trace says when the response went out and what ran after it.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        start = time.perf_counter()
        response = await client.post("/signup", params={"address": "ada@example.com"})
        took = time.perf_counter() - start
    response.raise_for_status()
    assert outbox == ["ada@example.com"]

    trace = tracer.last
    assert trace is not None, "the request was not traced"
    (last_byte,) = [e for e in trace.of_kind("sent") if e.get("type") == "http.response.body"]
    answered = (last_byte.t_ns - trace.start_ns) / 1e6
    print(
        f"POST /signup: the response was sent after {answered:.1f} ms; "
        f"the request's task finished after {trace.duration * 1000:.1f} ms "
        f"(the call returned after {took * 1000:.1f} ms)\n"
    )
    print_trace(trace)


if __name__ == "__main__":
    asyncio.run(main())
