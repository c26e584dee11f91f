"""The ``asgitrace`` command line; the only module that reads argv, prints or exits.

Commands: ``demo`` (the tutorial's endpoint), ``trace`` (requests to your own app),
``serve`` (your app under uvicorn, one line per request) and ``show`` (saved traces).
The helpers it drives (``_cli_app``, ``_cli_run``, ``_cli_report``) compute and never
print.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import socket
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, Final

from rich.console import Console, Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .. import __version__, exporters
from ..capture import TraceMiddleware, Tracer, default_is_app_file, instrument
from ..views import (
    THEME,
    SummaryView,
    Timeline,
    explain,
    print_trace,
    printable,
    render_trace,
    request_line,
    summarize,
    summary_markdown,
)
from ._app import CliError, find_tracer, load_app
from ._report import read_traces

if TYPE_CHECKING:
    from rich.console import RenderableType

    from .._support import ASGIApp
    from ..exporters import MalformedLine
    from ..trace import Trace

__all__ = ["CliError", "main"]

FORMATS: Final = ("table", "timeline", "markdown", "json", "html")
FEW: Final = 5  # up to this many traces, `table` shows each; past it, a summary
FILE_WIDTH: Final = 120  # tables written to a file: wide enough for the tutorial's columns


# -- arguments ----------------------------------------------------------------------------


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


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return port


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asgitrace",
        description="See what the event loop really did while an ASGI app served a request.",
    )
    parser.add_argument("--version", action="version", version=f"asgitrace {__version__}")
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


# -- demo ---------------------------------------------------------------------------------


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


# -- shared by trace, serve and show --------------------------------------------------------


def _stderr() -> Console:
    return Console(stderr=True, theme=THEME)


def _note(message: str) -> None:
    """One plain line on stderr (no markup: paths and messages are printed as they are)."""
    _stderr().print(Text(message), soft_wrap=True)


def _app_code(spec: str) -> Callable[[str], bool]:
    """The default rule, plus every file of the traced app's own top-level package.

    So that an app installed into site-packages still has its lines shown.
    """
    top = sys.modules.get(spec.partition(":")[0].partition(".")[0])
    file = getattr(top, "__file__", None)
    if not file:
        return default_is_app_file
    root = os.path.dirname(file) + os.sep if hasattr(top, "__path__") else file
    return lambda f: f.startswith(root) or default_is_app_file(f)


def _load(args: argparse.Namespace) -> tuple[ASGIApp, Tracer]:
    """Check the options, import the app, and return it traced, with its tracer.

    The tracer keeps no traces itself: the commands take them through callbacks.
    """
    if args.blocking_threshold <= 0:
        raise CliError("--blocking-threshold must be more than 0 seconds")
    app = load_app(args.app, app_dir=args.app_dir, factory=args.factory)
    own = find_tracer(app)
    if own is not None:
        _note(
            f"asgitrace: {args.app} has its own TraceMiddleware: using its {own!r} "
            "(its sampling, exclusions and thresholds apply)"
        )
        return app, own
    tracer = Tracer(
        max_traces=0, blocking_threshold=args.blocking_threshold, app_code=_app_code(args.app)
    )
    return instrument(app, tracer=tracer), tracer


@contextlib.contextmanager
def _opened(path: str) -> Iterator[IO[str]]:
    """Open *path* for writing text; a file this creates is readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from exc
    with open(fd, "w", encoding="utf-8", newline="\n") as file:
        yield file


def _slowest(traces: Sequence[Trace], count: int) -> list[Trace]:
    return sorted(traces, key=lambda t: t.duration_ns, reverse=True)[: max(count, 0)]


def _rich_report(
    args: argparse.Namespace, traces: Sequence[Trace], summary: SummaryView | None
) -> RenderableType:
    if args.format == "timeline":
        return Timeline(traces, ascii=args.ascii)
    parts: list[RenderableType] = []
    if len(traces) <= FEW:
        for trace in traces:
            parts += [render_trace(trace, ascii=args.ascii), Text("")]
        if len(traces) > 1:
            parts += [Timeline(traces, ascii=args.ascii), Text("")]
        if summary is not None:
            parts += [summary, Text("")]
    else:
        slowest = _slowest(traces, args.slowest)
        parts += [summary, Text("")] if summary is not None else []
        if slowest:
            noun = "request" if len(slowest) == 1 else f"{len(slowest)} requests"
            parts.append(Text(f"The slowest {noun}, in full", style="asgitrace.title"))
            parts.append(Text(""))
        for trace in slowest:
            parts += [render_trace(trace, ascii=args.ascii), Text("")]
    return Group(*parts[:-1])


def _text_report(
    args: argparse.Namespace, traces: Sequence[Trace], summary: SummaryView | None
) -> str:
    if args.format == "json":
        return "".join(exporters.to_json(t) + "\n" for t in traces)
    if args.format == "html":
        try:
            from ..views import to_html
        except ImportError as exc:  # pragma: no cover - only in builds without the page
            raise CliError("--format html is not available in this version") from exc
        return to_html(traces)
    # markdown: the explain page of each trace, or a summary and the slowest
    shown = list(traces) if len(traces) <= FEW else _slowest(traces, args.slowest)
    pages = [explain(t) for t in shown]
    if summary is not None:
        text = summary_markdown(summary.summary, blocking_threshold=summary.blocking_threshold)
        pages.insert(0 if len(traces) > FEW else len(pages), text)
    return "\n---\n\n".join(page.rstrip("\n") + "\n" for page in pages)


def _report(
    args: argparse.Namespace,
    traces: Sequence[Trace],
    console: Console,
    summary: SummaryView | None,
) -> None:
    """Write *traces* in ``args.format`` to ``args.output`` or the console."""
    if args.slowest < 0:
        raise CliError("--slowest must be 0 or more")
    if args.format in ("table", "timeline"):
        report = _rich_report(args, traces, summary)
        if args.output is None:
            console.print(report)
        else:
            with _opened(args.output) as file:
                Console(file=file, width=FILE_WIDTH, theme=THEME, color_system=None).print(report)
    else:
        text = _text_report(args, traces, summary)
        if args.output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with _opened(args.output) as file:
                file.write(text)
    if args.output is not None:
        noun = "trace" if len(traces) == 1 else "traces"
        _note(f"Wrote {len(traces)} {noun} to {args.output} ({args.format}).")


# -- trace --------------------------------------------------------------------------------


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[], object]]:
    """A progress bar on a terminal's stderr for runs of several requests (gone when done)."""
    console = _stderr()
    if total <= 1 or not console.is_terminal:
        yield lambda: None
        return
    columns = (
        TextColumn("tracing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("tracing", total=total)
        yield lambda: progress.advance(task)


def _trace(args: argparse.Namespace, console: Console) -> int:
    from ._run import plan_requests, send_requests

    plan = plan_requests(
        args.paths,
        method=args.method,
        data=args.data,
        headers=args.headers,
        requests=args.requests,
    )
    if args.concurrency < 1:
        raise CliError("--concurrency must be at least 1")
    traced, tracer = _load(args)
    finished: list[Trace] = []
    collect = finished.append
    tracer.add_callback(collect)
    try:
        with _progress(len(plan)) as advance:
            result = asyncio.run(
                send_requests(
                    traced,
                    plan,
                    server=args.server,
                    concurrency=args.concurrency,
                    timeout=args.timeout,
                    on_response=advance,
                )
            )
    finally:
        tracer.remove_callback(collect)
    traces = sorted(finished, key=lambda t: t.start_ns)
    if not traces:
        first = f": {result.errors[0]}" if result.errors else ""
        raise CliError(f"no request was traced{first}")
    summary = None
    if len(traces) > 1 or result.errors:
        summary = SummaryView(
            summarize(traces, elapsed_s=result.elapsed, errors=result.errors),
            blocking_threshold=args.blocking_threshold,
        )
    _report(args, traces, console, summary)
    if summary is not None and args.format not in ("table", "markdown"):
        _stderr().print(summary)  # the formats without one: the summary goes beside them
    if result.errors:
        _note(
            f"asgitrace: {len(result.errors)} of {len(plan)} requests got no answer; "
            f"the first: {printable(result.errors[0])}"
        )
        return 1
    return 0


# -- serve --------------------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    """Bind *host*:*port* ourselves, so that a port in use is one clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, OverflowError) as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CliError(
                f"port {port} on {host} is in use: stop the other server or pick --port"
            ) from exc
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _announce(console: Console, url: str, jsonl: str | None) -> None:
    """Say where the app listens (tests wrap this to learn the port)."""
    saving = f", traces appended to {jsonl}" if jsonl else ""
    console.print(
        Text(f"asgitrace serve: listening on {url}{saving} (Ctrl-C to stop)", style="bold"),
        soft_wrap=True,
    )


async def _serve_forever(app: ASGIApp, sock: socket.socket, ready: Callable[[], None]) -> None:
    import uvicorn

    config = uvicorn.Config(app, lifespan="auto", log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:  # noqa: ASYNC110 - uvicorn has a flag, not an event
            await asyncio.sleep(0.01)
        ready()

    announcer = asyncio.create_task(announce())
    try:
        # Awaited here rather than in a task: uvicorn calls sys.exit when the app's
        # lifespan startup fails, and a task would let that escape the event loop.
        await server.serve(sockets=[sock])
    except SystemExit:
        pass
    finally:
        announcer.cancel()
    if not server.started:
        raise CliError("the server stopped before it started (did the app's startup fail?)")


def _serve(args: argparse.Namespace, console: Console) -> int:
    try:
        import uvicorn  # noqa: F401  (checked before the app is imported)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise CliError("asgitrace serve needs uvicorn: pip install 'asgitrace[demo]'") from exc
    traced, tracer = _load(args)
    sock = _listen(args.host, args.port)
    served = 0

    def line(trace: Trace) -> None:
        nonlocal served
        served += 1
        console.print(request_line(trace), soft_wrap=True)

    callbacks: list[Callable[[Trace], object]] = [line]
    sink: exporters.JsonlSink | None = None
    try:
        if args.jsonl is not None:
            try:
                sink = exporters.JsonlSink(args.jsonl)
            except OSError as exc:
                raise CliError(f"cannot write {args.jsonl}: {exc.strerror or exc}") from exc
            callbacks.append(sink)
        for callback in callbacks:
            tracer.add_callback(callback)
        url = _url(sock)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_forever(traced, sock, lambda: _announce(console, url, args.jsonl)))
    finally:
        for callback in callbacks:
            tracer.remove_callback(callback)
        sock.close()
        if sink is not None:
            sink.close()
    noun = "request" if served == 1 else "requests"
    saved = f"; {sink.written} written to {args.jsonl}" if sink is not None else ""
    dropped = f" ({sink.dropped} dropped)" if sink is not None and sink.dropped else ""
    console.print(Text(f"Stopped after {served} {noun}{saved}{dropped}."), soft_wrap=True)
    return 0


# -- show ---------------------------------------------------------------------------------


def _show(args: argparse.Namespace, console: Console) -> int:
    problems: list[MalformedLine] = []
    try:
        traces = read_traces(args.files, on_error=problems.append)
    finally:
        for problem in problems[:5]:
            _note(f"asgitrace: skipped a malformed line: {problem}")
        if len(problems) > 5:
            _note(f"asgitrace: ... and {len(problems) - 5} more malformed lines")
    summary = SummaryView(summarize(traces)) if len(traces) > 1 else None
    _report(args, traces, console, summary)
    return 0


# -- main ---------------------------------------------------------------------------------

_COMMANDS: Final[dict[str, Callable[[argparse.Namespace, Console], int]]] = {
    "demo": _demo,
    "trace": _trace,
    "serve": _serve,
    "show": _show,
}


def _error(message: str) -> None:
    line = Text("asgitrace: error:", style="red")
    line.append(" " + message)
    _stderr().print(line, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    0: done; 1: an unexpected error, or requests without an answer; 2: an error the user
    can act on (bad arguments, an app that cannot be imported, a port in use, an
    unreadable file); 130: interrupted.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    console = Console(theme=THEME)
    try:
        return _COMMANDS[args.command](args, console)
    except CliError as exc:
        if args.debug:
            raise
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        _error("interrupted")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        _error(f"{type(exc).__name__}: {exc} (run with --debug for details)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
