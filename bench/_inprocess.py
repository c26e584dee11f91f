"""In-process measurements: call the ASGI app directly, one task per request.

No server, no sockets, no parser: what is left is the app, the middleware and the event
loop, so a difference of a microsecond per request shows.

Two halves: `measure` times requests (it runs inside `_worker.py`, one process per
variant), and `Worker`/`running_workers` drive those processes from ``run.py``. Every
measurement also gets a fresh event loop, so loop state (a task factory) is never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _apps import ASGIApp, Message, Receive, Scope
from _loops import run_in_new_loop
from _procs import Child, read_line, send_line, spawn, stop

WORKER = Path(__file__).with_name("_worker.py")
STARTUP_TIMEOUT = 60.0
MEASURE_TIMEOUT = 600.0
"""Seconds one measurement may take in a worker before the run gives up."""

_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT: Message = {"type": "http.disconnect"}


def get_scope(path: str) -> Scope:
    """A minimal, complete ASGI HTTP scope for ``GET path`` without a body."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"asgitrace-bench")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


def make_receive() -> Receive:
    """A ``receive`` that gives the (empty) request body once, then a disconnect."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if given:
            return _DISCONNECT
        given = True
        return _REQUEST

    return receive


async def _discard(message: Message) -> None:
    """The ``send`` of timed requests: the cheapest possible client."""


@dataclass
class Response:
    """What one checked request answered."""

    status: int | None = None
    body: bytes = b""


async def check_request(app: ASGIApp, path: str) -> Response:
    """Send one request and collect its status and body (used before timing)."""
    response = Response()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            response.status = int(message["status"])
        elif message["type"] == "http.response.body":
            response.body += message.get("body", b"")

    await asyncio.get_running_loop().create_task(app(get_scope(path), make_receive(), send))
    return response


async def drive(app: ASGIApp, path: str, count: int) -> int:
    """Serve *count* requests one after another, each in its own task; return the ns taken."""
    loop = asyncio.get_running_loop()
    template = get_scope(path)
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(count):
        await loop.create_task(app(dict(template), make_receive(), _discard))
    return clock() - start


def measure(
    app: ASGIApp, path: str, count: int, warmup: int, expected: bytes | None, loop_kind: str
) -> float:
    """Time *count* requests to *path* in a fresh loop, after a checked warm-up.

    Returns:
        Nanoseconds per request.

    Raises:
        RuntimeError: the app did not answer 200 with the *expected* body.
    """

    async def main() -> int:
        response = await check_request(app, path)
        if response.status != 200 or (expected is not None and response.body != expected):
            raise RuntimeError(f"GET {path} answered {response.status} {response.body[:80]!r}")
        await drive(app, path, warmup)
        gc.collect()
        return await drive(app, path, count)

    return run_in_new_loop(loop_kind, main) / count


# --- the worker processes (run.py's side) -------------------------------------------------------


@dataclass
class Measurement:
    """One timed batch of requests, as a worker reports it."""

    ns_per_request: float
    traces: int


class Worker:
    """A `_worker.py` process holding one variant of the app."""

    def __init__(self, variant: str, options: list[str]) -> None:
        cmd = [sys.executable, str(WORKER), "--variant", variant, *options]
        self.variant = variant
        self.child: Child = spawn(f"the {variant} in-process worker", cmd)

    def wait_ready(self) -> None:
        """Wait for the worker's ``READY`` (imports done, app built)."""
        line = read_line(self.child, time.monotonic() + STARTUP_TIMEOUT)
        if line != "READY":
            raise RuntimeError(f"{self.child.name} said {line!r} instead of READY")

    def measure(
        self, path: str, count: int, warmup: int, expected: bytes | None, loop: str
    ) -> Measurement:
        """Time *count* requests to *path* in the worker (see `measure`)."""
        command = {
            "path": path,
            "count": count,
            "warmup": warmup,
            "expected": expected.decode() if expected is not None else None,
            "loop": loop,
        }
        send_line(self.child, json.dumps(command))
        answer = json.loads(read_line(self.child, time.monotonic() + MEASURE_TIMEOUT))
        if "error" in answer:
            raise RuntimeError(f"{self.child.name}: {answer['error']}")
        return Measurement(float(answer["ns_per_request"]), int(answer["traces"]))


@contextlib.contextmanager
def running_workers(variants: list[str], options: list[str]) -> Iterator[dict[str, Worker]]:
    """Start one worker per variant (in parallel); stop them all on exit, whatever happens."""
    workers: dict[str, Worker] = {}
    try:
        for variant in variants:
            workers[variant] = Worker(variant, options)
        for worker in workers.values():
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers.values():
            stop(worker.child)
