"""The ``asgitrace`` command line; the only module that reads argv, prints or exits."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console

from . import __version__
from ._frames import default_is_app_file
from ._middleware import TraceMiddleware
from ._render import THEME, Timeline, print_trace
from ._tracer import Tracer

if TYPE_CHECKING:
    from ._trace import Trace

__all__ = ["main"]


class CliError(Exception):
    """An error the user can act on: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asgitrace",
        description="See what the event loop really did while an ASGI app served a request.",
    )
    parser.add_argument("--version", action="version", version=f"asgitrace {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="trace the tutorial's /wait endpoint in a real uvicorn server",
        description=(
            "Serve the tutorial's endpoint (await asyncio.sleep(1)) with uvicorn on 127.0.0.1, "
            "request it with httpx and print what the event loop did."
        ),
    )
    demo.add_argument(
        "--blocking",
        action="store_true",
        help="use time.sleep(1) instead of await asyncio.sleep(1), and see what it does",
    )
    demo.add_argument(
        "--delay", type=float, default=1.0, help="seconds the endpoint sleeps (default: 1)"
    )
    demo.add_argument(
        "-c", "--concurrency", type=int, default=1, help="requests sent at once (default: 1)"
    )
    return parser


async def _run_demo(blocking: bool, delay: float, concurrency: int) -> list[Trace]:
    try:
        import httpx

        from ._demo import blocking_app, reference_app
        from ._server import running_server
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise CliError(
            f"the demo needs the 'demo' extra ({exc.name} is missing): "
            "pip install 'asgitrace[demo]'"
        ) from exc
    # The demo app lives inside asgitrace, whose files the default rule treats as library
    # code: count it as the app's own, as a user's app would be.
    tracer = Tracer(app_code=lambda f: f.endswith("_demo.py") or default_is_app_file(f))
    app = (blocking_app if blocking else reference_app)(delay)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    async with running_server(app) as url, httpx.AsyncClient(base_url=url) as client:
        responses = await asyncio.gather(*(client.get("/wait") for _ in range(concurrency)))
    for response in responses:
        response.raise_for_status()
    return tracer.traces


def _demo(args: argparse.Namespace, console: Console) -> int:
    if args.concurrency < 1:
        raise CliError("--concurrency must be at least 1")
    variant = "time.sleep" if args.blocking else "await asyncio.sleep"
    console.print(
        f"[bold]asgitrace demo[/]: GET /wait ({variant}({args.delay:g})) "
        f"x{args.concurrency} through uvicorn on 127.0.0.1\n"
    )
    traces = asyncio.run(_run_demo(args.blocking, args.delay, args.concurrency))
    print_trace(traces[0], console)
    if len(traces) > 1:
        console.print()
        console.print(Timeline(traces))
        if args.blocking:
            console.print(
                "\nThe requests ran one after another: time.sleep held the event loop, "
                "so nothing else could run. Compare: asgitrace demo -c "
                f"{args.concurrency}"
            )
        else:
            console.print(
                "\nThe requests overlapped: while one awaited asyncio.sleep, the loop ran the "
                f"others. Compare: asgitrace demo --blocking -c {args.concurrency}"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    console = Console(theme=THEME)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _demo(args, console)
    except CliError as exc:
        if args.debug:
            raise
        Console(stderr=True).print(f"[red]asgitrace: error:[/] {exc}")
        return 2
    except Exception as exc:
        if args.debug:
            raise
        Console(stderr=True).print(
            f"[red]asgitrace: error:[/] {type(exc).__name__}: {exc} (run with --debug for details)"
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
