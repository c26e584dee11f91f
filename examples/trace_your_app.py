"""Trace your own app from the command line: ``asgitrace trace MODULE:APP PATH...``.

This file is an ordinary FastAPI app, the kind you already have. Nothing in it mentions
asgitrace: the command line imports it, adds the tracing middleware, serves it with
uvicorn on 127.0.0.1 (a free port), sends the requests and prints what the event loop
did. From this folder:

    asgitrace trace trace_your_app:app /items/1 /wait
    asgitrace trace trace_your_app:app /items/1 -n 200 -c 10      # a summary
    asgitrace trace trace_your_app:app /wait -c 3 --format timeline
    asgitrace serve trace_your_app:app                              # one line per request

Running this file (``python examples/trace_your_app.py``) runs the first of those.

What to look at:

* ``GET /items/1``: no await that suspends, so the request runs straight through;
* ``GET /wait``: one await on ``asyncio.sleep``, the whole wait in one row;
* the timeline and the summary below them (latency, slowest, blocking steps), printed
  because there were two requests.

``ASGITRACE_EXAMPLE_DELAY`` sets the sleep of ``/wait`` (seconds, default 1.0).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from fastapi import FastAPI

DELAY = float(os.environ.get("ASGITRACE_EXAMPLE_DELAY", "1.0"))

app = FastAPI()


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


@app.get("/wait")
async def wait_endpoint() -> dict[str, str]:
    await asyncio.sleep(DELAY)
    return {"message": "Done waiting"}


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    arguments = ["trace", "trace_your_app:app", "/items/1", "/wait"]
    print("$ asgitrace " + " ".join(arguments), flush=True)
    command = [sys.executable, "-m", "asgitrace", *arguments, "--app-dir", here]
    raise SystemExit(subprocess.call(command))
