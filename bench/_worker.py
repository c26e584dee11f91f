"""One variant of the app, measured in-process, in a process of its own.

Run by ``bench/run.py``: one worker per variant, so that whatever tracing leaves in a
process (a watchdog thread, ``sys.monitoring`` events on the endpoints' code, a heap full of
traces) never slows down the untraced variant::

    python bench/_worker.py --variant traced [--suspensions N] [--max-events N]

It prints ``READY``, then answers each JSON command line on stdin with one JSON line:

    {"path": "/hello", "count": 5000, "warmup": 500, "expected": "{...}", "loop": "asyncio"}
    -> {"ns_per_request": 41234.5, "traces": 1000}    or    {"error": "..."}

(``traces``: traces in the ring, or spans finished so far for the otel variant, whose
in-memory exporter is emptied before each measurement), and exits when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from _apps import SELF_CONTAINED, VARIANTS, Variant, build_app, instrument
from _inprocess import measure


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of the worker."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--endpoints", default=",".join(SELF_CONTAINED))
    parser.add_argument("--db-port", type=int, help="the fake database's port (endpoint real)")
    parser.add_argument("--suspensions", type=int, default=0)
    parser.add_argument("--max-events", type=int, default=None)
    return parser.parse_args(argv)


def answer(variant: Variant, command: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement command; errors become an ``error`` answer."""
    expected = command.get("expected")
    try:
        variant.reset()
        ns = measure(
            variant.app,
            command["path"],
            int(command["count"]),
            int(command["warmup"]),
            expected.encode() if expected is not None else None,
            command["loop"],
        )
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"ns_per_request": ns, "traces": variant.stored()}


def main(argv: list[str] | None = None) -> None:
    """Build the variant, say READY, serve commands until stdin closes."""
    args = parse_args(argv)
    endpoints = [name for name in args.endpoints.split(",") if name]
    app = build_app(endpoints, suspensions=args.suspensions, db_port=args.db_port)
    variant = instrument(args.variant, app, max_events=args.max_events)
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(answer(variant, json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
