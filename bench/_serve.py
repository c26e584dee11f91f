"""Serve one variant of the benchmark app with uvicorn on 127.0.0.1, on a free port.

Run by ``bench/run.py`` in a subprocess, so that the load generator never shares the
server's event loop or core::

    python bench/_serve.py --variant traced --loop uvloop --endpoints hello,three,sync

It binds port 0 itself, prints ``PORT <n>`` on stdout as soon as the socket listens, and
serves until SIGTERM/SIGINT or until its stdin closes (the parent died): no orphan servers.

``--soak`` (used by ``bench/soak.py``) serves the app traced by a default ``Tracer()``
whatever ``--variant`` says, and answers ``/bench-soak-stats`` (see `_soakstats`);
``--tracemalloc DIR`` starts tracemalloc before the first request and dumps the snapshots
asked for into DIR.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import tracemalloc
from pathlib import Path

import uvicorn
from _apps import (
    SELF_CONTAINED,
    VARIANTS,
    Variant,
    add_bench_routes,
    build_app,
    instrument,
    wrap,
)
from _soakstats import Stats, with_stats_route

from asgitrace import Tracer

_EXIT_GRACE = 5.0
"""Seconds a shutdown may take before the process exits hard."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of the server."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument(
        "--endpoints",
        default=",".join(SELF_CONTAINED),
        help="comma-separated routes to serve (default: those needing no database)",
    )
    parser.add_argument(
        "--db-port", type=int, help="the fake database's port on 127.0.0.1 (endpoint real)"
    )
    parser.add_argument(
        "--soak", action="store_true", help="Tracer() defaults and the soak statistics route"
    )
    parser.add_argument(
        "--tracemalloc",
        type=Path,
        metavar="DIR",
        help="trace Python allocations; with --soak, dump the snapshots asked for into DIR",
    )
    parser.add_argument(
        "--handover",
        choices=("knock", "contend", "handoff"),
        help="(bench/watchdog.py) the watchdog's hand-over; answer GET /bench-watchdog",
    )
    return parser.parse_args(argv)


def exit_when_stdin_closes(server: uvicorn.Server) -> None:
    """Stop *server* when the parent closes our stdin (or dies); exit hard if it hangs."""

    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        server.should_exit = True
        threading.Timer(_EXIT_GRACE, os._exit, args=(0,)).start()

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """Bind, print the port, serve."""
    args = parse_args(argv)
    try:
        app = build_app([name for name in args.endpoints.split(",") if name], db_port=args.db_port)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if args.handover is not None:
        from watchdog import patch_watchdog

        stats = patch_watchdog(args.handover)

        @app.get("/bench-watchdog")
        async def watchdog_stats() -> dict[str, object]:
            return {"late_ns": stats["late_ns"], "checks": stats["checks"]}

    if args.soak:
        tracer = Tracer()  # the defaults: a ring of 1000 traces
        served = with_stats_route(wrap(app, tracer), Stats(tracer, args.tracemalloc))
        add_bench_routes(app, Variant("soak", served, tracer, None))
    else:
        variant = instrument(args.variant, app)
        add_bench_routes(app, variant)
        served = variant.app
    if args.tracemalloc is not None:
        tracemalloc.start()
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says so, and without it every response waits ~40 ms (delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    config = uvicorn.Config(
        served,
        loop=args.loop,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    exit_when_stdin_closes(server)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
