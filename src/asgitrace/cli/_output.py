"""What ``trace``, ``serve`` and ``show`` share: loading the app traced, notes and the
progress bar on stderr, and writing a report in the chosen format."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Final

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

from .. import exporters
from ..capture import Tracer, default_is_app_file, instrument
from ..views import THEME, SummaryView, Timeline, explain, render_trace, summary_markdown
from ._app import CliError, find_tracer, load_app
from ._parser import FEW

if TYPE_CHECKING:
    from rich.console import RenderableType

    from .._support import ASGIApp
    from ..trace import Trace
    from ..views import Detail

__all__ = ["FILE_WIDTH", "load", "note", "progress", "report", "stderr"]

FILE_WIDTH: Final = 120  # tables written to a file: wide enough for the tutorial's columns


def stderr() -> Console:
    return Console(stderr=True, theme=THEME)


def note(message: str) -> None:
    """One plain line on stderr (no markup: paths and messages are printed as they are)."""
    stderr().print(Text(message), soft_wrap=True)


def app_code(spec: str) -> Callable[[str], bool]:
    """The default rule, plus every file of the traced app's own top-level package.

    So that an app installed into site-packages still has its lines shown.
    """
    top = sys.modules.get(spec.partition(":")[0].partition(".")[0])
    file = getattr(top, "__file__", None)
    if not file:
        return default_is_app_file
    root = os.path.dirname(file) + os.sep if hasattr(top, "__path__") else file
    return lambda f: f.startswith(root) or default_is_app_file(f)


def load(args: argparse.Namespace) -> tuple[ASGIApp, Tracer]:
    """Check the options, import the app, and return it traced, with its tracer.

    The tracer keeps no traces itself: the commands take them through callbacks.
    """
    if args.blocking_threshold <= 0:
        raise CliError("--blocking-threshold must be more than 0 seconds")
    app = load_app(args.app, app_dir=args.app_dir, factory=args.factory)
    own = find_tracer(app)
    if own is not None:
        note(
            f"asgitrace: {args.app} has its own TraceMiddleware: using its {own!r} "
            "(its sampling, exclusions and thresholds apply)"
        )
        return app, own
    tracer = Tracer(
        max_traces=0, blocking_threshold=args.blocking_threshold, app_code=app_code(args.app)
    )
    return instrument(app, tracer=tracer), tracer


@contextlib.contextmanager
def opened(path: str) -> Iterator[IO[str]]:
    """Open *path* for writing text; a file this creates is readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from exc
    with open(fd, "w", encoding="utf-8", newline="\n") as file:
        yield file


def slowest_of(traces: Sequence[Trace], count: int) -> list[Trace]:
    return sorted(traces, key=lambda t: t.duration_ns, reverse=True)[: max(count, 0)]


def _detail(args: argparse.Namespace) -> Detail:
    return "all" if getattr(args, "all_rows", False) else False


def rich_report(
    args: argparse.Namespace, traces: Sequence[Trace], summary: SummaryView | None
) -> RenderableType:
    if args.format == "timeline":
        return Timeline(traces, ascii=args.ascii)
    parts: list[RenderableType] = []
    if len(traces) <= FEW:
        for trace in traces:
            parts += [render_trace(trace, ascii=args.ascii, detail=_detail(args)), Text("")]
        if len(traces) > 1:
            parts += [Timeline(traces, ascii=args.ascii), Text("")]
        if summary is not None:
            parts += [summary, Text("")]
    else:
        slowest = slowest_of(traces, args.slowest)
        parts += [summary, Text("")] if summary is not None else []
        if slowest:
            noun = "request" if len(slowest) == 1 else f"{len(slowest)} requests"
            parts.append(Text(f"The slowest {noun}, in full", style="asgitrace.title"))
            parts.append(Text(""))
        for trace in slowest:
            parts += [render_trace(trace, ascii=args.ascii, detail=_detail(args)), Text("")]
    return Group(*parts[:-1])


def text_report(
    args: argparse.Namespace, traces: Sequence[Trace], summary: SummaryView | None
) -> str:
    if args.format == "json":
        return "".join(exporters.to_json(t) + "\n" for t in traces)
    if args.format == "html":
        try:
            from ..views import to_html
        except ImportError as exc:  # pragma: no cover - only in builds without the page
            raise CliError("--format html is not available in this version") from exc
        return to_html(traces, detail=_detail(args))
    # markdown: the explain page of each trace, or a summary and the slowest
    shown = list(traces) if len(traces) <= FEW else slowest_of(traces, args.slowest)
    pages = [explain(t, detail=_detail(args)) for t in shown]
    if summary is not None:
        text = summary_markdown(summary.summary, blocking_threshold=summary.blocking_threshold)
        pages.insert(0 if len(traces) > FEW else len(pages), text)
    return "\n---\n\n".join(page.rstrip("\n") + "\n" for page in pages)


def report(
    args: argparse.Namespace,
    traces: Sequence[Trace],
    console: Console,
    summary: SummaryView | None,
) -> None:
    """Write *traces* in ``args.format`` to ``args.output`` or the console."""
    if args.slowest < 0:
        raise CliError("--slowest must be 0 or more")
    if args.format in ("table", "timeline"):
        report = rich_report(args, traces, summary)
        if args.output is None:
            console.print(report)
        else:
            with opened(args.output) as file:
                Console(file=file, width=FILE_WIDTH, theme=THEME, color_system=None).print(report)
    else:
        text = text_report(args, traces, summary)
        if args.output is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with opened(args.output) as file:
                file.write(text)
    if args.output is not None:
        noun = "trace" if len(traces) == 1 else "traces"
        note(f"Wrote {len(traces)} {noun} to {args.output} ({args.format}).")


@contextlib.contextmanager
def progress(total: int) -> Iterator[Callable[[], object]]:
    """A progress bar on a terminal's stderr for runs of several requests (gone when done)."""
    console = stderr()
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
