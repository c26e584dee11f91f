"""Per-loop step accounting and the watchdog that catches steps blocking the loop.

Every step of every task created after the task hook is installed (traced or not) is
timed by its coroutine wrapper: `LoopMonitor.begin` / `LoopMonitor.end`. That is how a
trace knows what else the loop ran while it waited, without patching ``Handle._run``
(which uvloop never calls).

A single daemon thread, the watchdog, looks at every monitor with traced requests about
once per blocking threshold. When the step that is running has been running longer than
the threshold, it samples the loop thread's stack (``sys._current_frames``) once: that
sample names the line that is blocking (``time.sleep(1)``), which the step's end turns
into a ``blocked`` event.

The loop thread never waits for the watchdog: no lock, condition, sleep or I/O on its
behalf. The watchdog takes its turn the way any Python thread does, by asking for the
GIL, and it asks rarely and only when it has something to look at:

* it plans each look for when the step it last saw running could first be overdue
  (that step's start plus the threshold, a little past it), or one threshold after
  the look when the loop was between steps; a step that blocks is therefore sampled
  about one threshold (plus an eighth) after it began, wherever the look fell;
* a step that really blocks is exactly when the watchdog gets the GIL at once: a
  blocking call (``time.sleep``, a synchronous socket read) releases it, and CPU work
  gives it up within the interpreter's switch interval (5 ms by default);
* with no traced request on any loop for a whole period, it parks without a timer,
  and the next traced request wakes it by releasing a lock (which never blocks).

A healthy, busy loop is the hard case: it releases and retakes the GIL at every
``epoll_wait`` and socket call, and a thread waiting for the GIL asks its holder to drop
it only after a whole switch interval with no release in between, so the watchdog could
wait hundreds of milliseconds while the loop paid a futex wake per release. So the first
step boundary past the watchdog's planned look *knocks* (`_Watchdog.knock`): it shortens
the switch interval, which waits for nothing; the watchdog then wins the GIL within
microseconds, and its look restores the interval it found.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from .._support import log_failure, start_thread, wake
from ..trace import EventKind, TaskRef
from ..trace.codec import blocked_fields

if TYPE_CHECKING:
    from ._recorder import Recorder

__all__ = ["RING", "LoopMonitor", "OtherWork", "sample_stack", "window"]

RING: Final = 4096
"""How many recent steps each monitor remembers for "what else ran meanwhile"."""

KNOCK_INTERVAL: Final = 1e-5
"""The switch interval (seconds) while the watchdog is due and has not looked yet."""

_NEVER: Final = 1 << 62
_keys = itertools.count(1)

# The one clock of the monitor and the watchdog (step starts, durations, looks): tests
# replace it, with the tracer's, through the `loop_clock` fixture (tests/conftest.py).
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
        "blocks",
        "depth",
        "key",
        "requests",
        "requests_seen",
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
        self.key = next(_keys)
        self.thread_id = threading.get_ident()
        self.threshold_ns = threshold_ns
        self.active = 0  # traced requests in flight on this loop
        self.requests = 0  # traced requests started on this loop, ever
        self.requests_seen = 0  # (watchdog) `requests` at its last check
        self.depth = 0
        self.steps = 0
        self.step_start = 0
        self.step_ref: TaskRef | None = None
        self.step_rec: Recorder | None = None
        self.step_late = False
        self.step_reported = False
        # Three ints per step, flat: ring[3 * (i % RING)...] = task id, id of the request
        # task it serves (or 0), duration ns. Not a tuple per step: a tuple lives on,
        # tracked by the garbage collector, until the next collection, so one per step
        # made young collections several times as frequent (and the p99 tail with them).
        self.ring: list[int] = [0] * (3 * RING)
        self.sample: tuple[tuple[str, int, str], ...] = ()
        self.sample_seq = -1
        # Recent blocked steps, step number -> (owner request task id, duration, method,
        # path, trace id, file, line, function): who held the loop, for the victims.
        self.blocks: dict[int, tuple[Any, ...]] = {}
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
        start = _clock()
        if start >= _WATCHDOG.due_ns:  # it wants the GIL now: let it win it quickly
            _WATCHDOG.knock()
        self.depth = 1
        self.steps += 1
        self.step_ref = ref
        self.step_rec = rec
        self.step_reported = False
        self.step_late = rec is not None and rec.response_done
        self.step_start = start
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
        ring = self.ring
        at = 3 * (self.steps % RING)
        ring[at] = ref.id if ref is not None else 0
        ring[at + 1] = owner
        ring[at + 2] = duration
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
        # The culprit: the innermost app frame of the sample (else the innermost frame).
        culprit = next((i for i, f in enumerate(stack) if rec.is_app.file(f[0])), 0)
        raw = blocked_fields(duration, rec.clock() - duration, stack, culprit, self.step_late)
        rec.add(EventKind.BLOCKED, raw, ref)
        file, line, function = stack[culprit] if stack else ("", 0, "")
        blocks = self.blocks
        if len(blocks) >= 256:
            del blocks[next(iter(blocks))]
        blocks[self.steps] = (
            rec.task.id,
            duration,
            rec.method,
            rec.path,
            rec.trace_id,
            file,
            line,
            function,
        )

    def request_started(self) -> None:
        """A traced request starts on this loop (wakes a parked watchdog)."""
        self.active += 1
        self.requests += 1
        if _WATCHDOG.parked:
            _WATCHDOG.wake()

    def request_ended(self) -> None:
        """A traced request on this loop ends."""
        self.active -= 1

    def next_check(self, now: int) -> int:
        """(Watchdog thread) When this loop's running step could next be overdue."""
        if self.depth and self.sample_seq != self.steps:
            return max(self.step_start + self.threshold_ns, now)
        return now + self.threshold_ns

    def overdue(self, now: int) -> bool:
        """(Watchdog thread) Is a step running past the threshold and not yet sampled?"""
        return bool(
            self.depth
            and self.sample_seq != self.steps
            and now - self.step_start >= self.threshold_ns
        )


class OtherWork:
    """Steps the loop ran for others between a suspension and the resume.

    Read from the ring when the trace closes (`asgitrace.capture._recorder.other_work`):
    a finished trace keeps the result, not the monitor.
    """

    __slots__ = ("end", "mon", "start")

    def __init__(self, mon: LoopMonitor, start: int, end: int) -> None:
        self.mon = mon
        self.start = start
        self.end = end

    def resolve(self, own_request: int) -> dict[str, Any]:
        mon = self.mon
        return dict(window(mon.ring, mon.steps, mon.blocks, self.start, self.end, own_request))


def window(
    ring: list[int],
    steps: int,
    blocks: dict[int, tuple[Any, ...]],
    start: int,
    end: int,
    own_request: int,
) -> tuple[tuple[str, Any], ...]:
    """What the loop ran for others in steps ``start + 1 .. end`` of a monitor whose
    ring is *ring* and step counter *steps*, as the pairs a trace's work table keeps.

    A plain function over the monitor's data, no objects: a trace's close calls it for
    each wait that had other steps, on the loop's thread (29 times for a real request,
    with ~40 steps per wait under 16 concurrent requests).
    """
    count = max(end - start, 0)
    if not count or steps - start >= RING:
        return (("other_steps", count),)  # nothing ran, or the ring has moved past it
    first, last = (start + 1) % RING, end % RING
    # Steps start+1 .. end, three ints each: one slice of the ring, or two when the
    # range wraps around its end (sliced in C).
    if first <= last:
        lo, hi = 3 * first, 3 * last + 3
        tasks = set(ring[lo:hi:3])
        requests = set(ring[lo + 1 : hi : 3])
        longest = max(ring[lo + 2 : hi : 3])
    else:
        tail, head = ring[3 * first :], ring[: 3 * last + 3]
        tasks = set(tail[::3])
        tasks.update(head[::3])
        requests = set(tail[1::3])
        requests.update(head[1::3])
        longest = max(max(tail[2::3]), max(head[2::3]))
    requests.discard(0)
    requests.discard(own_request)
    pairs: tuple[tuple[str, Any], ...] = (
        ("other_steps", count),
        ("other_tasks", len(tasks)),
        ("other_requests", len(requests)),
        ("longest_ns", longest),
    )
    # Blocked steps are kept in step order: look only when some may fall in the range.
    if blocks and next(iter(blocks)) <= end and next(reversed(blocks)) > start:
        blocked_by = tuple(
            block[1:]
            for step, block in blocks.items()
            if start < step <= end and block[0] != own_request
        )
        if blocked_by:
            pairs += (("blocked_by", blocked_by),)
    return pairs


class _Watchdog:
    """One daemon thread for all monitors; started on first use (see the module's doc).

    Loop threads only ever add a monitor, release `_wake` and read flags: none of that
    can wait for the watchdog thread.
    """

    def __init__(self) -> None:
        self._monitors: weakref.WeakSet[LoopMonitor] = weakref.WeakSet()
        # Taken (never waited for) by whoever starts the thread, released by the thread
        # when it ends: `locked()` says whether one runs, and only one is started.
        self.running = threading.Lock()
        # Released to wake the thread (a pending wake-up while released); the thread
        # takes it back each time it waits.
        self._wake = threading.Lock()
        self._wake.acquire()
        self.checks = 0
        self.parked = True
        self.due_ns = _NEVER  # when the thread next wants the GIL (read at every step)
        self.knocked = False
        self.switch_interval = sys.getswitchinterval()

    def watch(self, mon: LoopMonitor) -> None:
        """(Any thread) Look at *mon* from now on, starting the thread if none runs."""
        self._monitors.add(mon)
        if self.running.acquire(blocking=False):
            try:
                start_thread(self._run, "asgitrace-watchdog", self.running)
            except Exception as exc:  # e.g. no more threads: blocking stays unsampled
                self.running.release()
                log_failure("blocking watchdog", exc)
                return
        self.wake()  # look again soon: the new (or stricter) monitor changes the plan

    def wake(self) -> None:
        """(Any thread) Unpark: the thread looks again now."""
        self.parked = False
        wake(self._wake)

    def knock(self) -> None:
        """(Loop thread, between two steps) The watchdog is due: shorten the switch
        interval until it has looked, so that it wins the GIL within microseconds.

        A thread waiting for the GIL asks its holder to drop it only after holding on
        for a whole switch interval with no release in between; a busy loop releases
        it at every system call, so at the default 5 ms the watchdog could wait
        hundreds of milliseconds, and the loop would pay a futex wake per release all
        that time. Nothing here waits.
        """
        self.due_ns = _NEVER
        if self.knocked or not self.running.locked():
            return
        current = sys.getswitchinterval()
        if current > KNOCK_INTERVAL:  # not left short by a knock that raced a look
            self.switch_interval = current
        sys.setswitchinterval(KNOCK_INTERVAL)
        # Last: a look that runs before this line leaves the interval short until the
        # next look, never restores a short one for good.
        self.knocked = True

    def _restore(self) -> None:
        if self.knocked:
            self.knocked = False
            sys.setswitchinterval(self.switch_interval)

    def _run(self) -> None:
        try:
            while True:
                timeout = self._check()
                if timeout is None:
                    self._wake.acquire()  # parked: until a traced request wakes it
                else:
                    self._wake.acquire(timeout=timeout)
        except Exception as exc:
            log_failure("blocking watchdog", exc)
        finally:
            self.due_ns = _NEVER
            self._restore()
            self.parked = True

    def _check(self) -> float | None:
        """Sample overdue steps; plan the next look. Return the seconds to wait for it,
        or ``None`` to park (no monitor had a traced request since the last look)."""
        self._restore()
        now = _clock()
        due = _NEVER
        slack = _NEVER
        for mon in list(self._monitors):
            if mon.overdue(now):
                self._sample(mon)
            if mon.active or mon.requests != mon.requests_seen:
                mon.requests_seen = mon.requests
                due = min(due, mon.next_check(now))
                slack = min(slack, mon.threshold_ns // 8)
        self.parked = due == _NEVER
        self.checks += 1
        if due == _NEVER:
            self.due_ns = _NEVER
            return None
        # A little past `due`, so that the step is overdue when the thread looks.
        self.due_ns = due + slack
        return (due - now + slack) / 1e9

    @staticmethod
    def _sample(mon: LoopMonitor) -> None:
        seq = mon.steps
        frame = sys._current_frames().get(mon.thread_id)
        stack = sample_stack(frame)
        if mon.steps == seq:  # still the same step
            mon.sample = stack
            mon.sample_seq = seq


_WATCHDOG: Final = _Watchdog()
