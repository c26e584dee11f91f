"""Daemon threads that a loop thread can start and wake without ever waiting for them.

Shared by the blocking watchdog (capture) and the offload worker (export).
"""

from __future__ import annotations

import _thread
import contextlib
import threading
from collections.abc import Callable

__all__ = ["start_thread", "wake"]


def start_thread(target: Callable[[], None], name: str, running: threading.Lock) -> None:
    """Run *target* in a new daemon thread named *name*, without waiting for it to start.

    Not `threading.Thread.start`, which waits until the new thread runs. The caller holds
    *running*; the thread releases it when *target* returns or raises, so that
    ``running.locked()`` says whether it runs, and acquiring it waits for its end.

    Raises:
        RuntimeError: the thread could not be started (*running* is still held).
    """

    def run() -> None:
        try:
            threading.current_thread().name = name
            target()
        finally:
            running.release()

    _thread.start_new_thread(run, ())


def wake(lock: threading.Lock) -> None:
    """Release *lock*, a thread's wake-up signal; never waits, and a wake-up that is
    already pending (the lock released) is left as it is."""
    with contextlib.suppress(RuntimeError):
        lock.release()
