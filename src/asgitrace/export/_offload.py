"""The offload worker: items handled one at a time by a daemon thread, from a bounded queue.

Shared by `asgitrace.exporters.JsonlSink` and `asgitrace.otel`: the caller (the event
loop's thread) only puts an item on the queue and never waits for the thread.
"""

from __future__ import annotations

import atexit
import queue
import threading
from collections.abc import Callable
from typing import Final, Generic, TypeVar, final

from .._support import log_failure

__all__ = ["Offload"]

_BATCH: Final = 1000  # items handled between two `after_batch` calls, at most


class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP: Final = None
_T = TypeVar("_T")


@final
class Offload(Generic[_T]):
    """Items handled one at a time by a daemon thread, from a bounded queue.

    `submit` never blocks: when the queue is full the item is dropped and counted.
    *handle* returns whether the item was handled (``False``: count it as dropped);
    *after_batch* runs whenever the queue has been emptied, *finish* once at `close`.
    `close` is registered to run at interpreter exit.
    """

    __slots__ = (
        "__weakref__",
        "_after_batch",
        "_closed",
        "_done",
        "_dropped",
        "_finish",
        "_handle",
        "_lock",
        "_queue",
        "_thread",
        "name",
    )

    def __init__(
        self,
        name: str,
        handle: Callable[[_T], bool],
        *,
        max_queue: int,
        after_batch: Callable[[], None] | None = None,
        finish: Callable[[], None] | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue!r}")
        self.name = name
        self._handle = handle
        self._after_batch = after_batch
        self._finish = finish
        self._queue: queue.Queue[_T | _Flush | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._done = 0
        self._dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @property
    def done(self) -> int:
        return self._done

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, item: _T) -> None:
        if not self._closed:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                pass
        self.drop()

    def drop(self) -> None:
        with self._lock:
            self._dropped += 1

    def flush(self, timeout: float | None) -> bool:
        if self._closed or not self._thread.is_alive():
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        if not self._thread.is_alive():  # pragma: no cover - it ends only through _STOP
            self._call(self._finish)
            return
        try:
            # The thread drains the queue, so this waits for room briefly at most.
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:  # pragma: no cover - a handler stuck for the whole timeout
            log_failure(f"{self.name} closing: still busy after {timeout} s")
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        get = self._queue.get
        while True:
            batch = [get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for index, item in enumerate(batch):
                if item is _STOP:
                    self._stop(batch[index + 1 :])
                    return
                if isinstance(item, _Flush):
                    self._call(self._after_batch)
                    item.done.set()
                else:
                    self._one(item)
            self._call(self._after_batch)

    def _one(self, item: _T) -> None:
        try:
            handled = self._handle(item)
        except Exception as exc:
            log_failure(f"{self.name} handling a trace", exc)
            handled = False
        if handled:
            self._done += 1
        else:
            self.drop()

    def _call(self, step: Callable[[], None] | None) -> None:
        if step is not None:
            try:
                step()
            except Exception as exc:  # pragma: no cover - the steps catch their own errors
                log_failure(f"{self.name} flushing", exc)

    def _stop(self, late: list[_T | _Flush | None]) -> None:
        """Handle nothing more: count what raced in after close, release waiters, finish."""
        while True:
            try:
                late.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for item in late:
            if isinstance(item, _Flush):
                item.done.set()
            elif item is not None:
                self.drop()
        self._call(self._after_batch)
        self._call(self._finish)
