"""The ``asgitrace`` argument parser: its commands, their options and examples."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any, Final

from .. import __version__
from ..capture import COMPILED

__all__ = ["FEW", "FORMATS", "build_parser", "version_line"]

FORMATS: Final = ("table", "timeline", "markdown", "json", "html")
FEW: Final = 5  # up to this many traces, `table` shows each; past it, a summary


def _command(
    commands: Any, name: str, help: str, description: str, examples: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, 88),
        epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Also accepted after the command; SUPPRESS keeps `asgitrace --debug CMD` working.
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return parser


def _app_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "app", metavar="MODULE:APP", help="the ASGI app to import, e.g. myapp:app or pkg.main:app"
    )
    parser.add_argument(
        "--app-dir",
        default=".",
        metavar="DIR",
        help="folder to import MODULE from (default: the current one)",
    )
    parser.add_argument(
        "--factory", action="store_true", help="APP is a function returning the app: call it"
    )
    parser.add_argument(
        "--blocking-threshold",
        type=float,
        default=0.1,
        metavar="S",
        help="seconds a step may hold the event loop before it counts as blocking (0.1)",
    )


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help=(
            "table: execution table, variable tracker and key moments (with many traces, "
            "a summary and the slowest); timeline: one lane per request; markdown: the "
            "explain page; json: JSON lines; html: one self-contained page (default: table)"
        ),
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    parser.add_argument(
        "--slowest",
        type=int,
        default=3,
        metavar="N",
        help=f"with more than {FEW} traces, show the tables of the N slowest (default: 3)",
    )
    parser.add_argument("--ascii", action="store_true", help="ASCII instead of box drawing")
    parser.add_argument(
        "--all",
        action="store_true",
        dest="all_rows",
        help="every row of the execution table and every column of the variable tracker, "
        "in tables, markdown and html (by default a long request is folded to about 15 "
        "rows and 4 tracker steps)",
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return port


def version_line() -> str:
    """``asgitrace 0.x.y (capture: compiled)``: which stepper runs matters for overhead."""
    capture = "compiled" if COMPILED else "pure Python"
    return f"asgitrace {__version__} (capture: {capture})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asgitrace",
        description="See what the event loop really did while an ASGI app served a request.",
    )
    parser.add_argument("--version", action="version", version=version_line())
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = _command(
        commands,
        "demo",
        "trace the tutorial's /wait endpoint in a real uvicorn server",
        "Serve the tutorial's endpoint (await asyncio.sleep(1)) with uvicorn on 127.0.0.1, "
        "request it with httpx and print what the event loop did.",
        """
        asgitrace demo
        asgitrace demo --blocking -c 2   # time.sleep(1): the requests run one after another
        """,
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

    trace = _command(
        commands,
        "trace",
        "trace requests to your own app",
        "Import your ASGI app, send it requests (through uvicorn on 127.0.0.1, or "
        "in-process) and print what the event loop did for each.",
        """
        asgitrace trace myapp:app /items/1
        asgitrace trace myapp:app /items/1 /users/me -H 'Authorization: Bearer x'
        asgitrace trace myapp:app /items -X POST -d '{"name": "spam"}'
        asgitrace trace myapp:app /items/1 -n 1000 -c 20    # summary and the slowest
        asgitrace trace myapp:app /wait -c 3 --format timeline
        asgitrace trace myapp:app /items/1 --format json -o traces.jsonl
        """,
    )
    _app_arguments(trace)
    trace.add_argument("paths", nargs="+", metavar="PATH", help="paths to request, e.g. /items/1")
    trace.add_argument(
        "-X", "--request", dest="method", metavar="METHOD", help="HTTP method (GET; POST with -d)"
    )
    trace.add_argument(
        "-d", "--data", metavar="DATA", help="request body; @FILE sends a file's content"
    )
    trace.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="HEADER",
        help="a request header, 'Name: value' (repeatable)",
    )
    trace.add_argument(
        "-n",
        "--requests",
        type=int,
        metavar="N",
        help="requests to send in all, cycling through the paths (default: one per path)",
    )
    trace.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=1,
        metavar="N",
        help="requests in flight at once (default: 1)",
    )
    trace.add_argument(
        "--server",
        choices=("uvicorn", "inprocess"),
        default="uvicorn",
        help="uvicorn: real HTTP on 127.0.0.1 with a free port; inprocess: httpx's "
        "ASGITransport, no socket (default: uvicorn)",
    )
    trace.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds per request (30)"
    )
    _output_arguments(trace)

    serve = _command(
        commands,
        "serve",
        "run your app under uvicorn with tracing, one line per request",
        "Serve your ASGI app with uvicorn, trace every request and print one line per "
        "request as it finishes: method, path, status, duration, waits and time blocked. "
        "Ctrl-C stops it.",
        """
        asgitrace serve myapp:app
        asgitrace serve myapp:app --port 9000 --jsonl traces.jsonl
        asgitrace show traces.jsonl            # later: the tables of what was served
        """,
    )
    _app_arguments(serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=_port, default=8000, help="port to listen on; 0 picks a free one (8000)"
    )
    serve.add_argument("--jsonl", metavar="FILE", help="also append every trace to FILE")

    show = _command(
        commands,
        "show",
        "render traces saved as JSON or JSON lines",
        "Read traces saved as JSON or JSON lines (asgitrace serve --jsonl, JsonlSink, "
        "write_jsonl, to_json) and render them. Several files (one per worker) are "
        "merged by arrival time.",
        """
        asgitrace show traces.jsonl
        asgitrace show traces-*.jsonl --format timeline
        asgitrace show trace.json --format markdown -o trace.md
        """,
    )
    show.add_argument("files", nargs="+", metavar="FILE", help="JSON or JSON-lines files")
    _output_arguments(show)
    return parser
