"""Folding the execution table to a size a person reads: the steps of a long request
folded under the line of the user's code that caused them.

Four folds, each only when the table is longer than `ROW_BUDGET` rows (a short
request, like the tutorial's, keeps every row):

0. a streamed body (its chunks and the awaits of its generator between them) becomes
   one row with the count, bytes and time, between the response's first send and its
   last, which stay;
1. consecutive rows of other tasks (child tasks, a streaming body's task) become one
   row that counts them;
2. consecutive waits on the same await expression (a loop of queries, the many
   suspensions inside one ``await client.get(...)``) become one wait with a count;
3. if still too long, each wait becomes a single row (await, wait and resume in one).

Rows that matter on their own (a blocked loop, a failure, a cancellation, a
disconnect, the response) are never folded. Each folded `Step` keeps the steps it
stands for in ``covers``, so the variable tracker still sees every change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ._rows import ALL_SENT, CHUNK_READY, PART_SENT
from ._text import fmt_bytes, fmt_duration

if TYPE_CHECKING:
    from ._rows import Step

__all__ = ["ROW_BUDGET", "fold_steps"]

TIMES: Final = "\u00d7"

ROW_BUDGET: Final = 15
"""The most rows the default execution table shows before it folds."""

_KEEP_MARKS: Final = frozenset({"blocked", "failed", "cancelled", "disconnected"})
_KEEP_KINDS: Final = frozenset(
    {"received", "entered", "sent", "returned", "failed", "blocked", "stream"}
)
_SUSPEND_KINDS: Final = frozenset({"await", "yield", "thread"})


def _flat(step: Step) -> tuple[Step, ...]:
    return step.covers or (step,)


def _foldable(step: Step) -> bool:
    return step.mark not in _KEEP_MARKS and step.kind not in _KEEP_KINDS


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def fold_steps(steps: Sequence[Step], request: str, budget: int = ROW_BUDGET) -> list[Step]:
    """*steps* folded to about *budget* rows (unchanged when they already fit)."""
    if len(steps) <= budget:
        return list(steps)
    groups = _fold_other_tasks(_fold_streamed_body(steps), request)
    groups = _fold_repeated_waits(groups, request)
    if sum(1 for g in groups for _ in g) > budget:
        groups = [[_one_row(g)] if _is_wait(g, request) else g for g in groups]
    return _renumber([step for group in groups for step in group])


def _fold_streamed_body(steps: Sequence[Step]) -> list[Step]:
    """*steps* with each streamed body between its first and last sends made one row.

    A ``StreamingResponse`` sends a chunk per ``yield`` of its generator, and the
    generator's awaits sit between them: two rows per chunk, which say no more than
    "it streamed N chunks over T". The response's start and its last send stay rows.
    """
    out: list[Step] = []
    i = 0
    while i < len(steps):
        step = steps[i]
        out.append(step)
        i += 1
        if step.kind == "sent" and step.after == PART_SENT:
            end = _stream_end(steps, i)
            run = steps[i:end] if end is not None else []
            if end is not None and sum(1 for s in run if _is_chunk(s)) >= 2:
                out.append(_stream_row(run, steps[end]))
                i = end
    return out


def _is_chunk(step: Step) -> bool:
    return step.kind == "sent" and step.before == CHUNK_READY and step.after == PART_SENT


def _stream_end(steps: Sequence[Step], start: int) -> int | None:
    """The index of the send that ends the body streamed from *start*, or ``None``
    when something that must stay a row (a block, a failure) comes first."""
    for j in range(start, len(steps)):
        step = steps[j]
        if step.kind == "sent" and step.after == ALL_SENT:
            return j
        if not (_is_chunk(step) or _foldable(step)):
            return None
    return None


def _stream_row(run: Sequence[Step], last: Step) -> Step:
    chunks = [s for s in run if _is_chunk(s)]
    sent = sum(s.body_bytes for s in chunks)
    over = fmt_duration(last.offset_ns - run[0].offset_ns)
    return dataclasses.replace(
        chunks[0],
        action=f"Stream the response body: sent {len(chunks)} chunks, {fmt_bytes(sent)},"
        f" over {over}",
        before="Response started",
        after="Body streamed; the next send ends it",
        offset_ns=run[0].offset_ns,
        kind="stream",
        mark="",
        body_bytes=sent,
        duration_ns=None,
        covers=tuple(x for s in run for x in _flat(s)),
    )


def _fold_other_tasks(steps: Sequence[Step], request: str) -> list[list[Step]]:
    """One group per step, with runs of other tasks' foldable steps made one row."""
    out: list[list[Step]] = []
    run: list[Step] = []

    def flush() -> None:
        if len(run) >= 2:
            out.append([_other_tasks_row(run)])
        else:
            out.extend([s] for s in run)
        run.clear()

    for step in steps:
        if step.task != request and _foldable(step):
            run.append(step)
            continue
        flush()
        out.append([step])
    flush()
    return _cycles(out, request)


def _other_tasks_row(run: list[Step]) -> Step:
    tasks = list(dict.fromkeys(s.task for s in run))
    spawned = sum(1 for s in run if s.kind == "spawned")
    first = run[0]
    names = list(dict.fromkeys(s.action[1:].split("]", 1)[0] for s in run if s.action[:1] == "["))
    label = f"[{', '.join(names[:2])}{', …' if len(names) > 2 else ''}] " if names else ""
    if len(tasks) == 1 and not spawned:
        action = f"{first.action} (+{_plural(len(run) - 1, 'step')})"
    elif spawned:
        action = f"{label}{_plural(spawned, 'child task')} ran ({_plural(len(run), 'step')})"
    else:
        action = f"{label}{_plural(len(tasks), 'other task')} ran ({_plural(len(run), 'step')})"
    return dataclasses.replace(
        first,
        action=action,
        before=first.before,
        after=run[-1].after,
        awaited=False,
        kind="tasks",
        mark="after" if all(s.mark == "after" for s in run) else "child",
        covers=tuple(x for s in run for x in _flat(s)),
    )


def _cycles(groups: list[list[Step]], request: str) -> list[list[Step]]:
    """Groups regrouped so that each wait of the request task (its await, the loop's
    row, whatever ran meanwhile, its resume) is one group."""
    out: list[list[Step]] = []
    current: list[Step] | None = None
    for group in groups:
        step = group[0]
        if current is None:
            if step.task == request and step.kind in _SUSPEND_KINDS:
                current = list(group)
            else:
                out.append(group)
            continue
        if not all(_foldable(s) for s in group) and step.kind != "tasks":
            out.extend([s] for s in current)
            current = None
            out.append(group)
            continue
        current.extend(group)
        if step.task == request and step.kind == "resumed":
            out.append(current)
            current = None
    if current is not None:
        out.extend([s] for s in current)
    return out


def _is_wait(group: list[Step], request: str) -> bool:
    return (
        len(group) > 1
        and group[0].task == request
        and group[0].kind in _SUSPEND_KINDS
        and group[-1].kind == "resumed"
    )


def _waited(group: list[Step]) -> int:
    return sum(s.duration_ns or 0 for s in group if s.kind == "loop")


def _fold_repeated_waits(groups: list[list[Step]], request: str) -> list[list[Step]]:
    """Consecutive waits on the same expression in the same place made one wait."""
    out: list[list[Step]] = []
    for group in groups:
        previous = out[-1] if out else None
        if (
            previous is not None
            and _is_wait(group, request)
            and _is_wait(previous, request)
            and _same_expression(previous[0], group[0])
        ):
            out[-1] = _merge(previous, group)
        else:
            out.append(group)
    return out


def _same_expression(a: Step, b: Step) -> bool:
    """The same await expression in the same function (a yield inside it counts)."""
    return a.target == b.target and a.before.split(" ", 1)[0] == b.before.split(" ", 1)[0]


def _merge(first: list[Step], second: list[Step]) -> list[Step]:
    """Two waits as one: the first's await (with a count), the loop's time of both,
    the last resume."""
    head, tail = first[0], second[-1]
    covered_head = tuple(x for s in (*first, second[0]) for x in _flat(s))
    middle_steps = second[1:-1]
    covered = (*covered_head, *(x for s in second[1:] for x in _flat(s)))
    count = sum(1 for x in covered if x.kind in _SUSPEND_KINDS and x.task == head.task)
    waited = sum(x.duration_ns or 0 for x in covered if x.kind == "loop")
    others = any(x.task != head.task for x in covered)
    if head.kind == "yield" and second[0].kind == "await":
        head = dataclasses.replace(second[0], number=head.number, offset_ns=head.offset_ns)
    base = head.action.split(f" {TIMES}", 1)[0]
    merged = [dataclasses.replace(head, action=f"{base} {TIMES}{count}", covers=covered_head)]
    if middle_steps:
        loop = next((s for s in middle_steps if s.kind == "loop"), middle_steps[0])
        meanwhile = "other tasks ran" if others else "the loop idled or ran other work"
        merged.append(
            dataclasses.replace(
                loop,
                action=f"Event loop waits {count} times ({meanwhile})",
                after=f"All {count} done after {fmt_duration(waited)} in all",
                duration_ns=waited,
                mark="loop",
                kind="loop",
                covers=tuple(x for s in middle_steps for x in _flat(s)),
            )
        )
    if tail.kind == "resumed" and " (waited " in tail.action:
        tail = dataclasses.replace(
            tail,
            action=f"{tail.action.split(' (waited ', 1)[0]} (waited {fmt_duration(waited)} in all)",
        )
    merged.append(tail)
    return merged


def _one_row(group: list[Step]) -> Step:
    """A whole wait as one row: what was awaited, how long, what came after."""
    head, tail = group[0], group[-1]
    others = any(x.task != head.task for s in group for x in _flat(s))
    action = head.action
    if others:
        action += " (other tasks ran meanwhile)"
    return dataclasses.replace(
        head,
        action=action,
        after=tail.after,
        output=tail.output,
        duration_ns=_waited(group) or None,
        kind="wait",
        covers=tuple(x for s in group for x in _flat(s)),
    )


def _renumber(steps: list[Step]) -> list[Step]:
    return [dataclasses.replace(s, number=n) for n, s in enumerate(steps, 1)]
