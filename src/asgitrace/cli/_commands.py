"""The commands ``demo``, ``trace`` and ``show``: each takes the parsed arguments and the
console, and returns the exit status (``serve`` is in `asgitrace.cli._serve`)."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from rich.console import Console

from ..capture import TraceMiddleware, Tracer, default_is_app_file
from ..views import SummaryView, Timeline, print_trace, printable, summarize
from ._app import CliError, websocket_paths
from ._output import load, note, progress, report, stderr
from ._report import read_traces

if TYPE_CHECKING:
    from ..export import MalformedLine
    from ..trace import Trace

__all__ = ["demo", "show", "trace"]


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


def demo(args: argparse.Namespace, console: Console) -> int:
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


# -- trace --------------------------------------------------------------------------------


def trace(args: argparse.Namespace, console: Console) -> int:
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
    traced, tracer = load(args)
    for path in dict.fromkeys(websocket_paths(traced, args.paths)):
        note(
            f"asgitrace: {path} is a websocket route and trace sends HTTP requests; "
            f"to trace it, run asgitrace serve {args.app} and connect a websocket client"
        )
    finished: list[Trace] = []
    collect = finished.append
    tracer.add_callback(collect)
    try:
        with progress(len(plan)) as advance:
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
            ascii=args.ascii,
        )
    report(args, traces, console, summary)
    if summary is not None and args.format not in ("table", "markdown"):
        stderr().print(summary)  # the formats without one: the summary goes beside them
    if result.errors:
        note(
            f"asgitrace: {len(result.errors)} of {len(plan)} requests got no answer; "
            f"the first: {printable(result.errors[0])}"
        )
        return 1
    return 0


# -- show ---------------------------------------------------------------------------------


def show(args: argparse.Namespace, console: Console) -> int:
    problems: list[MalformedLine] = []
    try:
        traces = read_traces(args.files, on_error=problems.append)
    finally:
        for problem in problems[:5]:
            note(f"asgitrace: skipped a malformed line: {problem}")
        if len(problems) > 5:
            note(f"asgitrace: ... and {len(problems) - 5} more malformed lines")
    summary = SummaryView(summarize(traces), ascii=args.ascii) if len(traces) > 1 else None
    report(args, traces, console, summary)
    return 0
