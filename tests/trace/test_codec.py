"""The codec's compact forms: one record per suspension, waits with no other work."""

from __future__ import annotations

from asgitrace.trace import Trace
from asgitrace.trace.codec import DECODERS, awaiting_fields, expand, resumed_fields

SITE = awaiting_fields(None, 12, None, "Future", None, False, None)


def _record(events: tuple[tuple[object, ...], ...]) -> tuple[object, ...]:
    return ("id1", "http", "GET", "/", None, "", (), (), 200, 0.0, 0, 90, 0, events, ())


def test_a_suspension_record_reads_as_awaiting_then_yielded_numbered_in_order() -> None:
    raw = (
        (5, 10, "received", 1, "Task-1", ("open", "http", "/", "GET", "1.1")),
        (9, 20, "suspended", 1, "Task-1", SITE, 3, True),
        (12, 30, "resumed", 1, "Task-1", resumed_fields(10, None, True, 4, 6, 1)),
        (13, 90, "completed", 1, "Task-1", ("end", 200, None)),
    )
    assert expand(raw) == (
        (1, 10, "received", 1, "Task-1", ("open", "http", "/", "GET", "1.1")),
        (2, 20, "awaiting", 1, "Task-1", SITE),
        (3, 20, "yielded", 1, "Task-1", ("yielded", 3, True)),
        (4, 30, "resumed", 1, "Task-1", resumed_fields(10, None, True, 4, 6, 1)),
        (5, 90, "completed", 1, "Task-1", ("end", 200, None)),
    )
    trace = Trace.of_record(_record(raw))
    assert [e.kind.value for e in trace.events] == [
        "received", "awaiting", "yielded", "resumed", "completed",
    ]  # fmt: skip
    assert dict(trace.events[2].fields) == {"ready": 3, "after_response": True}
    assert trace.task == (1, "Task-1")
    assert trace.outcome == "completed"


def test_events_without_a_suspension_record_are_kept_as_they_are() -> None:
    raw = ((7, 10, "completed", 1, "Task-1", ("end", 200, None)),)
    assert expand(raw) is raw


def test_a_wait_with_no_entry_in_the_work_table_ran_no_other_step() -> None:
    decode = DECODERS["resumed"]
    assert decode(resumed_fields(10, None, False, 4, 4, 1), {})["other_steps"] == 0
    assert decode(resumed_fields(10, None, False, 4, 6, 1), {})["other_steps"] == 2
    work = {(4, 6, 1): (("other_steps", 2), ("other_tasks", 1))}
    assert decode(resumed_fields(10, None, False, 4, 6, 1), work)["other_tasks"] == 1


def test_a_wait_no_monitor_counted_says_nothing_of_other_steps() -> None:
    fields = DECODERS["resumed"](resumed_fields(10, 0, False, 0, -1, 1), {})
    assert dict(fields) == {"waited_ns": 10, "lag_ns": 0}
