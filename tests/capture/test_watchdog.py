"""The watchdog: when it looks, what it samples, and how it gets its turn without the
loop thread ever waiting for it (issue 16).

Each test drives a watchdog of its own, never started as a thread (its `running` lock is
taken as if one ran), through the same calls its thread and the loop threads make, on a
fake clock: exact, and no sleeping.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import asgitrace._support._threads as _threads
import asgitrace.capture._loopmon as loopmon
from asgitrace.capture._loopmon import _NEVER, KNOCK_INTERVAL, LoopMonitor, _Watchdog

THRESHOLD = 100_000_000  # 100 ms
SLACK = THRESHOLD // 8


@pytest.fixture
def watchdog(monkeypatch: pytest.MonkeyPatch, clock: Any) -> Iterator[_Watchdog]:
    dog = _Watchdog()
    dog.running.acquire()  # as if its thread ran: `watch` starts none
    monkeypatch.setattr(loopmon, "_WATCHDOG", dog)
    monkeypatch.setattr(loopmon, "_clock", clock)
    before = sys.getswitchinterval()
    yield dog
    sys.setswitchinterval(before)


def test_an_idle_loop_with_a_request_in_flight_is_looked_at_one_threshold_later(
    watchdog: _Watchdog, clock: Any
) -> None:
    mon = LoopMonitor(THRESHOLD)
    mon.request_started()
    assert watchdog._check() == (THRESHOLD + SLACK) / 1e9
    assert watchdog.due_ns == clock.now + THRESHOLD + SLACK
    assert not watchdog.parked


def test_a_running_step_is_looked_at_when_it_could_first_be_overdue(
    watchdog: _Watchdog, clock: Any
) -> None:
    mon = LoopMonitor(THRESHOLD)
    mon.request_started()
    assert mon.begin(None, None) is True
    started = clock.now
    clock.advance(0.030)
    assert watchdog._check() == pytest.approx((THRESHOLD - 30_000_000 + SLACK) / 1e9)
    assert watchdog.due_ns == started + THRESHOLD + SLACK


def test_an_overdue_step_is_sampled_once_and_the_sample_names_this_test(
    watchdog: _Watchdog, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mon = LoopMonitor(THRESHOLD)
    monkeypatch.setattr(mon, "thread_id", _this_thread())
    mon.request_started()
    assert mon.begin(None, None) is True
    clock.advance(0.099)
    watchdog._check()
    assert mon.sample == ()  # 99 ms: not overdue yet
    clock.advance(0.001)
    watchdog._check()
    assert mon.sample_seq == mon.steps
    functions = [function for _, _, function in mon.sample]
    assert "test_an_overdue_step_is_sampled_once_and_the_sample_names_this_test" in functions
    first = mon.sample
    clock.advance(0.1)
    watchdog._check()
    assert mon.sample is first  # one sample per step
    # Sampled already: the next look is a threshold away, not at once.
    assert watchdog.due_ns == clock.now + THRESHOLD + SLACK


def test_with_no_traced_request_for_a_whole_period_the_watchdog_parks(
    watchdog: _Watchdog,
) -> None:
    mon = LoopMonitor(THRESHOLD)
    mon.request_started()
    mon.request_ended()
    assert watchdog._check() is not None  # sees the request that ran since its last look
    assert watchdog._check() is None  # sees none: parks, no timer
    assert watchdog.parked
    assert watchdog.due_ns == _NEVER


def test_a_traced_request_wakes_a_parked_watchdog_without_waiting(
    watchdog: _Watchdog,
) -> None:
    mon = LoopMonitor(THRESHOLD)
    watchdog._check()
    watchdog._wake.acquire(blocking=False)  # as its thread does before it waits
    assert watchdog.parked
    mon.request_started()
    assert not watchdog.parked
    assert not watchdog._wake.locked()  # released: the thread wakes
    mon.request_started()  # a second wake-up while one is pending is fine
    assert not watchdog._wake.locked()


def test_a_step_boundary_past_due_knocks_and_the_next_look_restores_the_interval(
    watchdog: _Watchdog, clock: Any
) -> None:
    sys.setswitchinterval(0.005)
    mon = LoopMonitor(THRESHOLD)
    mon.request_started()
    watchdog._check()
    due = watchdog.due_ns
    clock.now = due - 1
    assert mon.begin(None, None) is True
    mon.end(True)
    assert not watchdog.knocked  # not due yet: nothing changes
    assert sys.getswitchinterval() == 0.005
    clock.now = due
    assert mon.begin(None, None) is True
    assert watchdog.knocked
    assert sys.getswitchinterval() == pytest.approx(KNOCK_INTERVAL)
    assert watchdog.due_ns == _NEVER  # knocked once, not at every boundary
    mon.end(True)
    watchdog._check()
    assert not watchdog.knocked
    assert sys.getswitchinterval() == 0.005


def test_a_knock_does_nothing_without_a_watchdog_thread() -> None:
    dog = _Watchdog()  # never started
    before = sys.getswitchinterval()
    dog.knock()
    assert not dog.knocked
    assert sys.getswitchinterval() == before


def test_a_nested_step_does_not_knock(watchdog: _Watchdog, clock: Any) -> None:
    mon = LoopMonitor(THRESHOLD)
    assert mon.begin(None, None) is True
    watchdog.due_ns = 0
    assert mon.begin(None, None) is False  # nested: no boundary between two steps
    assert not watchdog.knocked


def _this_thread() -> int:

    return threading.get_ident()


def test_a_watchdog_that_cannot_start_logs_once_and_can_start_later(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dog = _Watchdog()

    def no_threads(*args: Any) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_threads._thread, "start_new_thread", no_threads)
    monkeypatch.setattr(loopmon, "_WATCHDOG", dog)
    LoopMonitor(THRESHOLD)
    assert not dog.running.locked()  # free again: a later monitor may start it
    assert [r.getMessage() for r in caplog.records] == [
        "asgitrace: blocking watchdog failed and was disabled; the app is unaffected"
    ]


def test_a_knock_racing_a_look_never_leaves_the_interval_short_for_good(
    watchdog: _Watchdog,
) -> None:
    sys.setswitchinterval(0.005)
    watchdog.knock()
    watchdog.knocked = False  # as if a look ran just before `knocked` was set
    watchdog.knock()  # the next knock must not save the short interval as the user's
    watchdog._check()
    assert sys.getswitchinterval() == 0.005


def test_a_knock_finding_the_knock_interval_keeps_the_interval_to_restore(
    watchdog: _Watchdog,
) -> None:
    """An interval already at the knock's (as the interpreter stores it: a hair under
    1e-5) is one a racing knock left short: it is not the one to restore."""
    watchdog.switch_interval = 0.005
    sys.setswitchinterval(KNOCK_INTERVAL)
    watchdog.knock()
    assert (watchdog.knocked, watchdog.switch_interval) == (True, 0.005)


def test_a_watchdog_thread_that_fails_parks_and_lets_another_start(
    watchdog: _Watchdog, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = []

    def broken() -> float | None:
        looks.append(1)
        if len(looks) == 1:
            return 0.0  # look again at once
        raise RuntimeError("watchdog bug")

    monkeypatch.setattr(watchdog, "_check", broken)
    watchdog.parked = False
    # Started as `watch` starts it (the fixture holds `running`): it ends at the 2nd look.
    _threads.start_thread(watchdog._run, "asgitrace-watchdog", watchdog.running)
    ended = watchdog.running.acquire(timeout=10)  # the thread released it as it ended
    assert ended
    watchdog.running.release()
    assert (watchdog.parked, watchdog.due_ns) == (True, _NEVER)
    assert len(looks) == 2


def test_each_look_is_counted_once(watchdog: _Watchdog) -> None:
    watchdog._check()
    watchdog._check()
    assert watchdog.checks == 2


def test_a_new_watchdog_is_parked_until_its_first_look() -> None:
    assert (_Watchdog().parked, _Watchdog().due_ns, _Watchdog().checks) == (True, _NEVER, 0)
