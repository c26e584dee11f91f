"""`JsonlSink`: an ``on_trace`` callback appending each finished trace to a JSON Lines file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, final

from .._support import log_failure
from ..trace import Trace
from ._json import StrPath, open_private, to_json
from ._offload import Offload

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["JsonlSink"]


@final
class JsonlSink:
    """An ``on_trace`` callback that appends each finished trace to a JSON-lines file.

    ``Tracer(on_trace=JsonlSink("traces.jsonl"))``. Calling the sink only puts the trace
    on a bounded queue (``put_nowait``): it never blocks the event loop, and when the
    queue is full the trace is dropped and counted in `dropped`. A background daemon
    thread turns traces into JSON (resolving their lazy fields) and writes them, flushing
    the file after each batch.

    The file is opened for appending when the sink is made; one it creates is readable
    by its owner only (mode ``0o600``). Give each worker process its own file (for
    example ``f"traces-{os.getpid()}.jsonl"``) and merge them with `read_jsonl`.

    `close` writes what is queued, then closes the file; it runs by itself at
    interpreter exit, and when the sink is used as a context manager. An error writing
    the file is logged once; the sink then drops what it is given.

    Args:
        path: The file to append to.
        max_queue: How many traces may wait for the writer before new ones are dropped.

    Raises:
        ValueError: *max_queue* is less than 1.
        OSError: the file cannot be opened.

    .. versionadded:: 0.1
    """

    __slots__ = ("__weakref__", "_failed", "_file", "_worker", "path")

    def __init__(self, path: StrPath, *, max_queue: int = 10_000) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue!r}")
        self.path = os.fspath(path)
        self._failed = False
        self._file = open_private(path, append=True)
        self._worker: Offload[Trace] = Offload(
            "asgitrace-jsonl",
            self._write,
            max_queue=max_queue,
            after_batch=self._flush_file,
            finish=self._close_file,
        )

    def __repr__(self) -> str:
        return f"<JsonlSink {self.path!r} written={self.written} dropped={self.dropped}>"

    @property
    def written(self) -> int:
        """How many traces were written to the file so far."""
        return self._worker.done

    @property
    def dropped(self) -> int:
        """How many traces were not written: queue full, sink closed or a write failed."""
        return self._worker.dropped

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._worker.closed

    def __call__(self, trace: Trace) -> None:
        """Queue *trace* for writing, or count it as dropped; never blocks, never raises."""
        self._worker.submit(trace)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is written and flushed.

        Args:
            timeout: Seconds to wait at most (``None``: as long as it takes).

        Returns:
            Whether it was all written in time (``True`` at once on a closed sink).
        """
        return self._worker.flush(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is queued, then close the file. Later traces are dropped.

        Calling it again does nothing.

        Args:
            timeout: Seconds to wait at most for the writer to finish.
        """
        self._worker.close(timeout)

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write(self, trace: Trace) -> bool:
        if self._failed:
            return False
        try:
            line = to_json(trace)
        except Exception as exc:
            log_failure("JsonlSink: turning a trace into JSON", exc)
            return False
        try:
            self._file.write(line + "\n")
        except Exception as exc:
            self._fail(exc)
            return False
        return True

    def _flush_file(self) -> None:
        if not self._failed:
            try:
                self._file.flush()
            except Exception as exc:
                self._fail(exc)

    def _close_file(self) -> None:
        try:
            self._file.close()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        log_failure(f"JsonlSink writing {self.path!r}", exc)
        self._failed = True
