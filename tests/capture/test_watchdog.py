"""The watchdog's turn-taking: it never makes a busy loop fight it for the GIL.

These tests drive the hand-over directly (`LoopMonitor.begin` at a step boundary, the
monitor's request counters) and wait for the watchdog's checks through the same
condition the loop threads use, with a generous bound instead of sleeps.
"""

from __future__ import annotations

import pytest

import asgitrace.capture._loopmon as loopmon
from asgitrace.capture._loopmon import _NEVER, _WATCHDOG, LoopMonitor


@pytest.fixture(autouse=True)
def patient_handoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # A loaded CI machine may take longer than the production bound to schedule the
    # watchdog thread: wait as long as it takes (bounded) so that results are exact.
    monkeypatch.setattr(loopmon, "HANDOFF_WAIT", 10.0)


def test_a_step_boundary_past_due_hands_the_watchdog_its_turn() -> None:
    mon = LoopMonitor(10**8)
    mon.request_started()
    try:
        _WATCHDOG.due_ns = 0  # the watchdog wants the GIL now
        before = _WATCHDOG.checks
        assert mon.begin(None, None) is True  # hands over before the step starts
        mon.end(True)
        assert _WATCHDOG.checks > before
        assert _WATCHDOG.due_ns != 0  # it planned its next look
    finally:
        mon.request_ended()


def test_the_watchdog_looks_about_once_per_threshold_while_requests_run() -> None:
    mon = LoopMonitor(10**8)
    mon.request_started()
    try:
        _WATCHDOG.handoff()
        assert _WATCHDOG.due_ns != _NEVER
        before = _WATCHDOG.checks
        # A healthy loop: step after step, none of them past due.
        for _ in range(100):
            if mon.begin(None, None):
                mon.end(True)
        assert _WATCHDOG.checks - before <= 1
    finally:
        mon.request_ended()


def test_with_no_traced_request_for_a_whole_period_the_watchdog_parks() -> None:
    mon = LoopMonitor(10**8)
    mon.request_started()
    mon.request_ended()
    _WATCHDOG.handoff()  # sees the request that started since its last look
    _WATCHDOG.handoff()  # sees none: parks, no timer
    assert _WATCHDOG.due_ns == _NEVER
    before = _WATCHDOG.checks
    if mon.begin(None, None):  # a parked watchdog takes no turns
        mon.end(True)
    assert _WATCHDOG.checks == before


def test_a_traced_request_wakes_a_parked_watchdog() -> None:
    mon = LoopMonitor(10**8)
    _WATCHDOG.handoff()
    _WATCHDOG.handoff()
    assert _WATCHDOG.due_ns == _NEVER
    mon.request_started()
    try:
        assert _WATCHDOG.due_ns == 0  # the next step boundary hands over
        if mon.begin(None, None):
            mon.end(True)
        assert _WATCHDOG.due_ns not in (0, _NEVER)
    finally:
        mon.request_ended()


def test_a_dead_watchdog_is_never_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    class Dead:
        def is_alive(self) -> bool:
            return False

    monkeypatch.setattr(_WATCHDOG, "_thread", Dead())
    _WATCHDOG.due_ns = 0
    _WATCHDOG.handoff()
    assert _WATCHDOG.due_ns == _NEVER
