"""The loop monitor, unit by unit, on the fake clock (issue 21): when a step counts as
blocking, which request it is charged to, and what "other work" and lag a resume reports.

Every test drives a `LoopMonitor` through the calls the stepper makes (`begin`, `end`),
with the `loop_clock` fixture behind both the monitor and the tracer: exact times, no
sleeping, no watchdog thread.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from asgitrace import Tracer
from asgitrace.capture._accel import Stepper
from asgitrace.capture._context import new_task_ref
from asgitrace.capture._loopmon import RING, LoopMonitor, OtherWork, sample_stack
from asgitrace.capture._recorder import Recorder, other_work
from asgitrace.trace.codec import resumed_fields

MS = 1_000_000


@pytest.fixture
def tracer(loop_clock: Any) -> Tracer:
    return Tracer(clock=loop_clock, blocking_threshold=0.1)


def request(tracer: Tracer, path: str = "/x") -> Recorder:
    return tracer.recorder({"type": "http", "method": "GET", "path": path, "headers": []}, None)


def blocked(rec: Recorder) -> list[tuple[int, int, bool]]:
    """(duration ns, started ns, after response) of each ``blocked`` event so far."""
    return [(e[5][1], e[5][2], e[5][5]) for e in rec.events if e[2] == "blocked"]


def step(mon: LoopMonitor, clock: Any, rec: Recorder | None, ms: float, ref: Any = None) -> None:
    opened = mon.begin(ref, rec)
    clock.advance(ms / 1000)
    mon.end(opened)


class TestBlockingJudgement:
    def test_a_step_exactly_at_the_threshold_blocks(self, tracer: Tracer, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(tracer)
        step(mon, loop_clock, rec, 100)
        assert blocked(rec) == [(100 * MS, loop_clock.now - 100 * MS, False)]

    def test_a_step_one_nanosecond_under_the_threshold_does_not(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(tracer)
        opened = mon.begin(None, rec)
        loop_clock.now += 100 * MS - 1
        mon.end(opened)
        assert blocked(rec) == []

    def test_the_tracers_own_threshold_holds_when_the_loops_is_stricter(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        """The monitor's threshold is the loop's strictest; each request is judged by
        its own tracer's (`rec.blocking_ns`, 100 ms here)."""
        mon = LoopMonitor(10 * MS)
        rec = request(tracer)
        step(mon, loop_clock, rec, 50)
        assert blocked(rec) == []
        step(mon, loop_clock, rec, 100)
        assert blocked(rec) == [(100 * MS, loop_clock.now - 100 * MS, False)]

    def test_the_loops_threshold_holds_when_the_tracers_is_stricter(self, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(Tracer(clock=loop_clock, blocking_threshold=0.01))
        step(mon, loop_clock, rec, 50)
        assert blocked(rec) == []

    def test_untraced_steps_are_timed_but_never_judged(self, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        step(mon, loop_clock, None, 500)
        assert (mon.steps, mon.ring[3 * 1 + 2]) == (1, 500 * MS)

    def test_a_step_after_the_response_is_marked_so(self, tracer: Tracer, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(tracer)
        rec.response_done = True
        step(mon, loop_clock, rec, 120)
        assert blocked(rec) == [(120 * MS, loop_clock.now - 120 * MS, True)]


class TestNestedSteps:
    """A traced coroutine driven inside another hooked task's step (a middleware that
    awaits the app in its own task): the outer call opens the step, the inner one
    attributes it to the request."""

    def test_the_traced_part_is_judged_when_it_ends_not_when_the_outer_step_does(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(tracer)
        outer = mon.begin(None, None)
        inner = mon.begin(None, rec)
        loop_clock.advance(0.150)
        mon.end(inner)
        assert (outer, inner) == (True, False)
        assert blocked(rec) == [(150 * MS, loop_clock.now - 150 * MS, False)]
        loop_clock.advance(0.050)
        mon.end(outer)
        assert blocked(rec) == [(150 * MS, loop_clock.now - 200 * MS, False)]
        assert (mon.depth, mon.steps, mon.ring[3 * 1 + 2]) == (0, 1, 200 * MS)

    def test_a_short_traced_part_is_judged_again_when_the_outer_step_ends(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(tracer)
        outer = mon.begin(None, None)
        inner = mon.begin(None, rec)
        loop_clock.advance(0.010)
        mon.end(inner)
        assert blocked(rec) == []
        loop_clock.advance(0.100)
        mon.end(outer)
        assert blocked(rec) == [(110 * MS, loop_clock.now - 110 * MS, False)]

    def test_a_nested_part_after_the_response_is_marked_so(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(tracer)
        outer = mon.begin(None, None)
        rec.response_done = True
        inner = mon.begin(None, rec)
        loop_clock.advance(0.100)
        mon.end(inner)
        mon.end(outer)
        assert blocked(rec) == [(100 * MS, loop_clock.now - 100 * MS, True)]

    def test_a_nested_part_exactly_at_the_tracers_threshold_is_reported(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(10 * MS)
        rec = request(tracer)  # 100 ms
        mon.begin(None, None)
        inner = mon.begin(None, rec)
        loop_clock.advance(0.1)
        mon.end(inner)
        assert blocked(rec) == [(100 * MS, loop_clock.now - 100 * MS, False)]

    def test_a_nested_part_exactly_at_the_loops_threshold_is_reported(
        self, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(Tracer(clock=loop_clock, blocking_threshold=0.01))
        mon.begin(None, None)
        inner = mon.begin(None, rec)
        loop_clock.advance(0.1)
        mon.end(inner)
        assert blocked(rec) == [(100 * MS, loop_clock.now - 100 * MS, False)]

    def test_nested_untraced_steps_are_not_judged(self, loop_clock: Any) -> None:
        mon = LoopMonitor(10 * MS)
        outer = mon.begin(None, None)
        inner = mon.begin(None, None)
        loop_clock.advance(0.5)
        mon.end(inner)
        mon.end(outer)
        assert (mon.depth, mon.steps, mon.ring[3 * 1 + 2]) == (0, 1, 500 * MS)

    def test_a_nested_part_one_nanosecond_under_the_threshold_is_not_reported(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(10 * MS)
        rec = request(tracer)  # 100 ms
        mon.begin(None, None)
        inner = mon.begin(None, rec)
        loop_clock.now += 100 * MS - 1
        mon.end(inner)
        assert blocked(rec) == []
        mon.abandon()  # the outer step's stepper failed: closed unjudged
        assert (mon.depth, mon.step_rec, blocked(rec)) == (0, None, [])


class TestOtherWork:
    def test_counts_the_steps_tasks_and_other_requests_between_suspend_and_resume(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        own, other = request(tracer, "/own"), request(tracer, "/other")
        child, a, b = new_task_ref("child"), new_task_ref("a"), new_task_ref("b")
        step(mon, loop_clock, own, 1, own.task)  # step 1: the request suspends after it
        step(mon, loop_clock, other, 5, a)  # 2: another request's task
        step(mon, loop_clock, None, 7, b)  # 3: an untraced task
        step(mon, loop_clock, own, 2, child)  # 4: the request's own child task
        step(mon, loop_clock, other, 3, a)  # 5: the other request again
        work = OtherWork(mon, 1, 5).resolve(own.task.id)
        assert work == {
            "other_steps": 4,
            "other_tasks": 3,
            "other_requests": 1,
            "longest_ns": 7 * MS,
        }

    def test_a_single_step_between_is_read_alone(self, tracer: Tracer, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        own, other = request(tracer, "/own"), request(tracer, "/other")
        step(mon, loop_clock, own, 1, own.task)
        step(mon, loop_clock, other, 4, new_task_ref("a"))
        step(mon, loop_clock, own, 9, own.task)
        work = OtherWork(mon, 1, 2).resolve(own.task.id)
        assert work == {
            "other_steps": 1,
            "other_tasks": 1,
            "other_requests": 1,
            "longest_ns": 4 * MS,
        }

    def test_no_steps_between_means_no_other_work(self, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        step(mon, loop_clock, None, 1)
        assert OtherWork(mon, 1, 1).resolve(0) == {"other_steps": 0}

    def test_is_read_from_the_ring_when_the_trace_closes(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        own, other = request(tracer, "/own"), request(tracer, "/other")
        own.mon = mon
        step(mon, loop_clock, own, 1, own.task)
        step(mon, loop_clock, other, 4, new_task_ref("a"))
        step(mon, loop_clock, other, 6, new_task_ref("b"))
        own.add("resumed", resumed_fields(10 * MS, None, False, 1, 3, own.task.id))
        trace = own.finish("completed", {})
        for _ in range(3):  # the ring moving on after the close changes nothing
            step(mon, loop_clock, other, 50)
        (resumed,) = trace.of_kind("resumed")
        assert dict(resumed.fields) == {
            "waited_ns": 10 * MS,
            "lag_ns": None,
            "other_steps": 2,
            "other_tasks": 2,
            "other_requests": 1,
            "longest_ns": 6 * MS,
        }

    def test_the_close_keeps_only_waits_during_which_other_steps_ran(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        own, other = request(tracer, "/own"), request(tracer, "/other")
        step(mon, loop_clock, own, 1, own.task)
        step(mon, loop_clock, other, 4, new_task_ref("a"))
        events = [
            (1, 0, "resumed", 1, "T", resumed_fields(5, None, False, 1, 1, own.task.id)),
            (2, 0, "resumed", 1, "T", resumed_fields(5, None, False, 1, 2, own.task.id)),
            (3, 0, "resumed", 1, "T", resumed_fields(5, None, False, 1, 2, own.task.id)),
        ]
        work = dict(other_work(mon, events))
        assert list(work) == [(1, 2, own.task.id)]
        assert dict(work[(1, 2, own.task.id)])["other_requests"] == 1


class TestResumeLag:
    """The lag of a resume is how late the loop ran the timer that woke the task, read on
    the loop's own clock (the timer's ``when`` is loop time): a fake loop gives exact values."""

    def resume(self, tracer: Tracer, loop_clock: Any, when: float, now: float) -> Any:
        rec = request(tracer)
        stepper = Stepper(_never(), None, rec, new_task_ref("t"))
        stepper._loop = types.SimpleNamespace(time=lambda: now)  # type: ignore[assignment]
        stepper.timer_when = when
        stepper.t_suspend = loop_clock.now
        loop_clock.advance(0.25)
        stepper._resumed(rec, None)
        stepper.coro.close()
        (event,) = rec.events
        return event[5]

    def test_is_the_time_past_the_timers_deadline(self, tracer: Tracer, loop_clock: Any) -> None:
        fields = self.resume(tracer, loop_clock, when=10.0, now=10.0078125)  # 1/128 s late
        assert fields[:3] == ("resumed", 250 * MS, 7_812_500)

    def test_is_never_negative(self, tracer: Tracer, loop_clock: Any) -> None:
        fields = self.resume(tracer, loop_clock, when=10.0, now=9.5)
        assert fields[:3] == ("resumed", 250 * MS, 0)


async def _never() -> None:  # never driven: only the stepper's bookkeeping is under test
    pass


class TestOtherWorkAcrossTheRingsEnd:
    def test_a_range_that_wraps_around_the_ring_is_read_in_two_slices(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        own, other = request(tracer, "/own"), request(tracer, "/other")
        a, b = new_task_ref("a"), new_task_ref("b")
        for _ in range(RING - 3):  # steps 1 .. RING - 3
            step(mon, loop_clock, None, 0)
        step(mon, loop_clock, own, 1, own.task)  # RING - 2: the request suspends
        step(mon, loop_clock, other, 3, a)  # RING - 1, the ring's last slot
        step(mon, loop_clock, None, 9, b)  # RING, in slot 0: the ring's end is crossed
        step(mon, loop_clock, other, 12, a)  # RING + 1, slot 1: the longest, read last
        work = OtherWork(mon, RING - 2, RING + 1).resolve(own.task.id)
        assert work == {
            "other_steps": 3,
            "other_tasks": 2,
            "other_requests": 1,
            "longest_ns": 12 * MS,
        }

    def test_a_range_the_ring_no_longer_holds_gives_only_its_step_count(
        self, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        for _ in range(RING + 1):
            step(mon, loop_clock, None, 1)
        # Step 1 is exactly RING steps back: its slot holds step RING + 1 now.
        assert OtherWork(mon, 1, 5).resolve(0) == {"other_steps": 4}

    def test_steps_that_took_no_time_give_a_longest_of_zero(self, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        for _ in range(3):
            step(mon, loop_clock, None, 0)
        assert OtherWork(mon, 1, 3).resolve(0)["longest_ns"] == 0


class TestBookkeeping:
    def test_the_watchdogs_sample_of_this_step_is_the_blocked_events_stack(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(tracer)
        opened = mon.begin(None, rec)
        mon.sample, mon.sample_seq = (("/app/main.py", 7, "handler"),), mon.steps
        loop_clock.advance(0.1)
        mon.end(opened)
        (event,) = rec.events
        assert event[5][3] == (("/app/main.py", 7, "handler"),)

    def test_without_an_app_frame_the_culprit_is_the_innermost_frame(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(Tracer(clock=loop_clock, app_code=lambda file: False))
        opened = mon.begin(None, rec)
        mon.sample = (("/lib/a.py", 1, "inner"), ("/lib/b.py", 2, "outer"))
        mon.sample_seq = mon.steps
        loop_clock.advance(0.1)
        mon.end(opened)
        (event,) = rec.events
        assert event[5][3:5] == ((("/lib/a.py", 1, "inner"), ("/lib/b.py", 2, "outer")), 0)

    def test_the_culprit_is_the_innermost_app_frame(self, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(Tracer(clock=loop_clock, app_code=lambda file: file == "/app/main.py"))
        opened = mon.begin(None, rec)
        mon.sample = (("/lib/a.py", 1, "inner"), ("/app/main.py", 2, "handler"))
        mon.sample_seq = mon.steps
        loop_clock.advance(0.1)
        mon.end(opened)
        (event,) = rec.events
        assert event[5][4] == 1

    def test_abandon_in_a_nested_step_closes_only_the_inner_part(self, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        mon.begin(None, None)
        mon.begin(None, None)
        mon.abandon()
        assert mon.depth == 1

    def test_a_stack_sample_names_each_frames_line(self) -> None:
        stack = sample_stack(sys._getframe())
        line = sys._getframe().f_lineno - 1  # the line above
        assert stack[0] == (__file__, line, "test_a_stack_sample_names_each_frames_line")

    def test_a_sample_of_an_earlier_step_is_not_this_ones(
        self, tracer: Tracer, loop_clock: Any
    ) -> None:
        mon = LoopMonitor(100 * MS)
        rec = request(tracer)
        opened = mon.begin(None, rec)
        mon.sample, mon.sample_seq = (("/app/main.py", 7, "handler"),), mon.steps - 1
        loop_clock.advance(0.1)
        mon.end(opened)
        (event,) = rec.events
        assert event[5][3] == ()

    def test_abandon_with_no_step_open_leaves_the_depth_at_zero(self, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        mon.abandon()
        assert (mon.depth, mon.step_reported) == (0, True)

    def test_requests_are_counted_one_by_one(self, loop_clock: Any) -> None:
        mon = LoopMonitor(100 * MS)
        mon.request_started()
        mon.request_started()
        mon.request_ended()
        assert (mon.active, mon.requests) == (1, 2)

    def test_a_stack_sample_keeps_thirty_frames_by_default(self) -> None:
        def deep(n: int) -> Any:
            return deep(n - 1) if n else sys._getframe()

        assert len(sample_stack(deep(40))) == 30
