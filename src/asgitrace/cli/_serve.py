"""``asgitrace serve``: the app under uvicorn on a socket we bind, one line per request."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from .. import exporters
from ..export import Offload
from ..views import request_line
from ._app import CliError
from ._output import load

if TYPE_CHECKING:
    from .._support import ASGIApp
    from ..trace import Trace

__all__ = ["serve"]

_MAX_LINES_QUEUED = 10_000
"""Finished requests that may wait for their line before new ones go unprinted (counted)."""
_PAUSE = 0.02
"""Seconds the line printer rests after a batch (a line shows at most this much later)."""


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


class _Lines:
    """The tracer callback of `serve`: one line per finished request, printed off the loop.

    Building a line resolves the trace's events and writing it waits on the terminal:
    both would run on the event loop's thread, between two requests, if done in the
    callback. The callback only counts the request and hands the trace to an `Offload`
    worker thread (a deque append and a lock release, never a wait), which builds the
    lines and prints each batch at once. `close` prints every line still queued, so they
    all come before the closing "Stopped after N requests".

    The worker pauses `_PAUSE` seconds after each batch: under load it then wakes a few
    dozen times a second for many lines, instead of once per request, each wake-up taking
    the GIL from the loop's thread; one print of many lines also costs rich much less than
    many prints of one.
    """

    def __init__(self, console: Console) -> None:
        self.served = 0
        self._console = console
        self._batch: list[Text] = []
        self._failed = 0
        self._worker: Offload[Trace] = Offload(
            "asgitrace-serve-lines",
            self._build,
            max_queue=_MAX_LINES_QUEUED,
            after_batch=self._print,
        )

    def __call__(self, trace: Trace) -> None:
        # Counted here, on the loop's thread: exact even when a line is never printed.
        self.served += 1
        self._worker.submit(trace)

    @property
    def unprinted(self) -> int:
        """Requests whose line was not printed (the queue was full, or printing failed)."""
        return self._worker.dropped + self._failed

    def _build(self, trace: Trace) -> bool:
        self._batch.append(request_line(trace))
        return True

    def _print(self) -> None:
        """Print the lines built since the last batch (one print), then pause."""
        if not self._batch:
            return
        lines, self._batch = self._batch, []
        try:
            self._write(lines)
        except Exception:
            self._failed += len(lines)
            raise  # logged once by the worker
        if not self._worker.closed:
            time.sleep(_PAUSE)

    def _write(self, lines: list[Text]) -> None:
        console = self._console
        if console.color_system is None:
            # No colours (a file, a pipe): rich would write just the text of each line, at
            # ~20x the cost of writing it ourselves.
            console.file.write("".join(f"{line.plain}\n" for line in lines))
            console.file.flush()
        else:
            console.print(Text("\n").join(lines), soft_wrap=True)

    def close(self) -> None:
        """Print what is queued (waiting for the worker thread), then stop it."""
        self._worker.close(timeout=None)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """SIGTERM (``kill``, ``docker stop``) ends `serve` the way Ctrl-C does.

    uvicorn handles the signal (a graceful shutdown), then raises it again once its
    handlers are restored: with SIGTERM's default action the process would die right there,
    before the queued lines, the JSON lines file and "Stopped after N requests" are
    written. With this handler in place, that second SIGTERM is a KeyboardInterrupt,
    which `serve` expects. Signals can only be set from the main thread: elsewhere
    nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped(served: int, unprinted: int, sink: exporters.JsonlSink | None, jsonl: str) -> Text:
    """The last line: how many requests were served, and what became of their traces."""
    noun = "request" if served == 1 else "requests"
    skipped = f" ({unprinted} not printed)" if unprinted else ""
    saved = f"; {sink.written} written to {jsonl}" if sink is not None else ""
    dropped = f" ({sink.dropped} dropped)" if sink is not None and sink.dropped else ""
    return Text(f"Stopped after {served} {noun}{skipped}{saved}{dropped}.")


def serve(args: argparse.Namespace, console: Console) -> int:
    try:
        import uvicorn  # noqa: F401  (checked before the app is imported)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise CliError("asgitrace serve needs uvicorn: pip install 'asgitrace[demo]'") from exc
    traced, tracer = load(args)
    sock = _listen(args.host, args.port)
    lines = _Lines(console)
    callbacks: list[Callable[[Trace], object]] = [lines]
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
        with contextlib.suppress(KeyboardInterrupt), _sigterm_stops_like_ctrl_c():
            asyncio.run(_serve_forever(traced, sock, lambda: _announce(console, url, args.jsonl)))
    finally:
        for callback in callbacks:
            tracer.remove_callback(callback)
        sock.close()
        lines.close()
        if sink is not None:
            sink.close()
    console.print(_stopped(lines.served, lines.unprinted, sink, args.jsonl), soft_wrap=True)
    return 0
