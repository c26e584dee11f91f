"""CPU time per suspension, traced and untraced, in this process: pure vs compiled stepper.

    python bench/cpu_suspension.py [--suspensions 2000] [--requests 25]
    ASGITRACE_NO_EXTENSIONS=1 python bench/cpu_suspension.py   # the pure-Python stepper

A bare ASGI app awaits ``asyncio.sleep(0)`` N times per request; it is called directly
(no client, no server), untraced and through `asgitrace.instrument`, in turn. The figure
is the thread's CPU time (``time.thread_time_ns``), the minimum over the requests: on a
shared machine, wall-clock rounds spread by 2x, CPU time much less (docs/performance.md,
"The compiled stepper"). Run it alternately with and without ``ASGITRACE_NO_EXTENSIONS``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from _inprocess import get_scope, make_receive

import asgitrace.capture
from asgitrace import Tracer, instrument


def bare_app(suspensions: int) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        for _ in range(suspensions):
            await asyncio.sleep(0)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def cpu_ns(app: Any) -> int:
    async def send(message: Any) -> None:
        pass

    scope, receive = get_scope("/suspend"), make_receive()
    start = time.thread_time_ns()
    await app(scope, receive, send)
    return time.thread_time_ns() - start


async def main(suspensions: int, requests: int) -> None:
    app = bare_app(suspensions)
    traced = instrument(app, tracer=Tracer(max_events=10 * suspensions + 100))
    best = {"untraced": float("inf"), "traced": float("inf")}
    for _ in range(requests):
        for name, variant in (("untraced", app), ("traced", traced)):
            best[name] = min(best[name], await cpu_ns(variant) / suspensions)
    capture = "compiled" if asgitrace.capture.COMPILED else "pure Python"
    print(
        f"Python {sys.version.split()[0]}, capture: {capture}: untraced {best['untraced']:.0f}, "
        f"traced {best['traced']:.0f}, added {best['traced'] - best['untraced']:.0f} "
        f"CPU ns/suspension (min of {requests} requests of {suspensions} suspensions)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suspensions", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(main(args.suspensions, args.requests))
