"""The offload worker: items handled one at a time by a daemon thread, from a bounded queue.

Shared by `asgitrace.exporters.JsonlSink` and `asgitrace.otel`: the caller (the event
loop's thread) only appends an item to a deque and releases a lock, and never waits for
the thread, nor for a lock it may hold.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Callable
from typing import Final, Generic, TypeVar, final

from .._support import log_failure, start_thread, wake

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

    `submit` never blocks, nor waits for a lock the thread may hold: the queue is a
    deque (its appends and pops are atomic) and the thread is woken by releasing a lock,
    which never waits. When the queue is full the item is dropped and counted.
    *handle* returns whether the item was handled (``False``: count it as dropped);
    *after_batch* runs whenever the queue has been emptied, *finish* once at `close`.
    `close` is registered to run at interpreter exit.
    """

    __slots__ = (
        "__weakref__",
        "_after_batch",
        "_closed",
        "_closing",
        "_done",
        "_dropped",
        "_drops",
        "_finish",
        "_handle",
        "_items",
        "_max_queue",
        "_running",
        "_wake",
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
        self._items: deque[_T | _Flush | None] = deque()
        self._max_queue = max_queue
        # Released to wake the thread (a pending wake-up while released); the thread
        # takes it back each time it waits.
        self._wake = threading.Lock()
        self._wake.acquire()
        self._closing = threading.Lock()  # taken once, without waiting, by `close`
        self._done = 0
        self._drops = itertools.count(1)
        self._dropped = 0
        self._closed = False
        self._running = threading.Lock()  # held while the thread runs
        self._running.acquire()
        start_thread(self._work, name, self._running)
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
        if not self._closed and len(self._items) < self._max_queue:
            self._items.append(item)
            wake(self._wake)
        else:
            self.drop()

    def drop(self) -> None:
        # `next` on a count is atomic; two threads may store their numbers out of
        # order, so keep the larger.
        self._dropped = max(self._dropped, next(self._drops))

    def flush(self, timeout: float | None) -> bool:
        if self._closed or not self._running.locked():
            return True
        marker = _Flush()
        self._items.append(marker)
        wake(self._wake)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        if not self._closing.acquire(blocking=False):
            return  # closed already, or closing in another thread
        self._closed = True
        atexit.unregister(self.close)
        if not self._running.locked():  # pragma: no cover - it ends only through _STOP
            self._call(self._finish)
            return
        self._items.append(_STOP)
        wake(self._wake)
        if self._running.acquire(timeout=-1 if timeout is None else timeout):
            self._running.release()  # it ended
        else:  # pragma: no cover - a handler stuck for the whole timeout
            log_failure(f"{self.name} closing: still busy after {timeout} s")

    def _take(self) -> list[_T | _Flush | None]:
        batch: list[_T | _Flush | None] = []
        pop = self._items.popleft
        with contextlib.suppress(IndexError):
            while len(batch) < _BATCH:
                batch.append(pop())
        return batch

    def _work(self) -> None:
        while True:
            self._wake.acquire()
            while batch := self._take():
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
        while more := self._take():
            late.extend(more)
        for item in late:
            if isinstance(item, _Flush):
                item.done.set()
            elif item is not None:
                self.drop()
        self._call(self._after_batch)
        self._call(self._finish)
