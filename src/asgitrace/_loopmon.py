"""Per-loop step accounting and the watchdog that catches steps blocking the loop.

Every step of every task created after the task hook is installed (traced or not) is
timed by its coroutine wrapper: `LoopMonitor.begin` / `LoopMonitor.end`. That is how a
trace knows what else the loop ran while it waited, without patching ``Handle._run``
(which uvloop never calls).

A single daemon thread, the watchdog, looks at every live monitor a few times per
blocking threshold. When the step that is running has been running longer than the
threshold, it samples the loop thread's stack (``sys._current_frames``) once: that
sample names the line that is blocking (``time.sleep(1)``), which the step's end turns
into a ``blocked`` event. When no step is overdue the watchdog only compares two
integers per monitor and sleeps.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from ._events import EventKind, TaskRef
from ._log import log_failure
from ._trace import RESOLVERS

if TYPE_CHECKING:
    from ._trace import Recorder

__all__ = ["RING", "LoopMonitor", "OtherWork", "sample_stack"]

RING: Final = 4096
"""How many recent steps each monitor remembers for "what else ran meanwhile"."""

_clock = time.perf_counter_ns
_HERE: Final = os.path.dirname(os.path.abspath(__file__))
_OWN_FILES: Final = frozenset(
    os.path.join(_HERE, name)
    for name in ("_stepper.py", "_middleware.py", "_taskhook.py", "_loopmon.py", "_entry.py")
)


def sample_stack(frame: FrameType | None, limit: int = 30) -> tuple[tuple[str, int, str], ...]:
    """(file, line, function) of *frame* and its callers, innermost first, without
    asgitrace's own capture frames."""
    out: list[tuple[str, int, str]] = []
    while frame is not None and len(out) < limit:
        code = frame.f_code
        if code.co_filename not in _OWN_FILES:
            out.append((code.co_filename, frame.f_lineno or 0, code.co_name))
        frame = frame.f_back
    return tuple(out)


class LoopMonitor:
    """Step accounting for one event loop (touched only from that loop's thread,
    except for the watchdog's reads and its single ``sample`` write)."""

    __slots__ = (
        "__weakref__",
        "active",
        "depth",
        "ring",
        "sample",
        "sample_seq",
        "step_late",
        "step_rec",
        "step_ref",
        "step_reported",
        "step_start",
        "steps",
        "thread_id",
        "threshold_ns",
    )

    def __init__(self, threshold_ns: int) -> None:
        self.thread_id = threading.get_ident()
        self.threshold_ns = threshold_ns
        self.active = 0  # traced requests in flight on this loop
        self.depth = 0
        self.steps = 0
        self.step_start = 0
        self.step_ref: TaskRef | None = None
        self.step_rec: Recorder | None = None
        self.step_late = False
        self.step_reported = False
        # ring[i % RING] = (task id, id of the request task it serves or 0, duration ns)
        self.ring: list[tuple[int, int, int]] = [(0, 0, 0)] * RING
        self.sample: tuple[tuple[str, int, str], ...] = ()
        self.sample_seq = -1
        _WATCHDOG.watch(self)

    def begin(self, ref: TaskRef | None, rec: Recorder | None) -> bool:
        """A step starts (or, nested, is attributed); return whether this call opened it."""
        if self.depth:
            self.depth += 1
            if rec is not None:
                self.step_rec = rec
                self.step_ref = ref
                self.step_late = rec.response_done
            return False
        self.depth = 1
        self.steps += 1
        self.step_ref = ref
        self.step_rec = rec
        self.step_reported = False
        self.step_late = rec is not None and rec.response_done
        self.step_start = _clock()
        return True

    def end(self, opened: bool) -> None:
        """The step that `begin` opened (or attributed) ends."""
        self.depth -= 1
        rec = self.step_rec
        if not opened:
            # The traced part of a step nested in a hooked task's step ends. Judge the
            # block now: the request may finish before the outer step does, and a late
            # `blocked` event would be dropped with it.
            if rec is not None and not self.step_reported:
                duration = _clock() - self.step_start
                if duration >= self.threshold_ns and duration >= rec.blocking_ns:
                    self.step_reported = True
                    self._blocked(rec, self.step_ref, duration)
            return
        duration = _clock() - self.step_start
        ref = self.step_ref
        owner = rec.task.id if rec is not None else 0
        self.ring[self.steps % RING] = (ref.id if ref is not None else 0, owner, duration)
        if (
            rec is not None
            and not self.step_reported
            and duration >= self.threshold_ns
            and duration >= rec.blocking_ns
        ):
            self._blocked(rec, ref, duration)
        self.step_rec = None

    def abandon(self) -> None:
        """A stepper failed inside `end`: close its step without judging it."""
        self.depth = max(self.depth - 1, 0)
        if not self.depth:
            self.step_rec = None
            self.step_reported = True

    def _blocked(self, rec: Recorder, ref: TaskRef | None, duration: int) -> None:
        stack = self.sample if self.sample_seq == self.steps else ()
        fields: dict[str, Any] = {
            "duration_ns": duration,
            "started_ns": rec.clock() - duration,
            "stack": stack,
        }
        if stack:
            culprit = next((f for f in stack if rec.is_app.file(f[0])), stack[0])
            fields.update(file=culprit[0], line=culprit[1], function=culprit[2])
        if self.step_late:
            fields["after_response"] = True
        rec.add(EventKind.BLOCKED, ("blocked", fields), ref)

    def overdue(self, now: int) -> bool:
        """(Watchdog thread) Is a step running past the threshold and not yet sampled?"""
        return bool(
            self.depth
            and self.sample_seq != self.steps
            and now - self.step_start >= self.threshold_ns
        )


def _resolve_blocked(raw: tuple[Any, ...], context: Any) -> Mapping[str, Any]:
    from ._frames import source_line

    fields = dict(raw[1])
    if "file" in fields:
        fields["code"] = source_line(fields["file"], fields["line"])
    fields["stack"] = tuple(f"{f}:{n} in {fn}" for f, n, fn in fields["stack"])
    return fields


RESOLVERS["blocked"] = _resolve_blocked


class OtherWork:
    """Steps the loop ran for others between a suspension and the resume (lazy)."""

    __slots__ = ("end", "mon", "start")

    def __init__(self, mon: LoopMonitor, start: int, end: int) -> None:
        self.mon = mon
        self.start = start
        self.end = end

    def resolve(self, own_request: int) -> dict[str, Any]:
        count = max(self.end - self.start, 0)
        out: dict[str, Any] = {"other_steps": count}
        if count and self.mon.steps - self.start < RING:
            tasks: set[int] = set()
            requests: set[int] = set()
            longest = 0
            for i in range(self.start + 1, self.end + 1):
                task, owner, duration = self.mon.ring[i % RING]
                tasks.add(task)
                if owner and owner != own_request:
                    requests.add(owner)
                longest = max(longest, duration)
            out.update(other_tasks=len(tasks), other_requests=len(requests), longest_ns=longest)
        return out


class _Watchdog:
    """One daemon thread for all monitors; started on first use."""

    def __init__(self) -> None:
        self._monitors: weakref.WeakSet[LoopMonitor] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.interval = 0.05

    def watch(self, mon: LoopMonitor) -> None:
        with self._lock:
            self._monitors.add(mon)
            self.interval = min(self.interval, mon.threshold_ns / 4e9)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="asgitrace-watchdog", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                time.sleep(self.interval)
                now = _clock()
                for mon in list(self._monitors):
                    if mon.overdue(now):
                        self._sample(mon)
        except Exception as exc:  # pragma: no cover - defensive: the watchdog must not die loudly
            log_failure("blocking watchdog", exc)

    @staticmethod
    def _sample(mon: LoopMonitor) -> None:
        seq = mon.steps
        frame = sys._current_frames().get(mon.thread_id)
        stack = sample_stack(frame)
        if mon.steps == seq:  # still the same step
            mon.sample = stack
            mon.sample_seq = seq


_WATCHDOG: Final = _Watchdog()
