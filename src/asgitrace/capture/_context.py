"""Which request's recorder is current, and asgitrace's own task identities."""

from __future__ import annotations

import asyncio
import itertools
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING

from ..trace import TaskRef

if TYPE_CHECKING:
    from ._recorder import Recorder

__all__ = ["CURRENT", "new_task_ref", "task_ref", "thread_ref"]

CURRENT: ContextVar[Recorder | None] = ContextVar("asgitrace_current", default=None)
"""The recorder of the request whose code is running, inherited by the tasks it creates."""

_task_ids = itertools.count(1)
_refs: weakref.WeakKeyDictionary[asyncio.Task[object], TaskRef] = weakref.WeakKeyDictionary()


def new_task_ref(name: str) -> TaskRef:
    """Return a fresh identity, for a task or a thread that has none yet."""
    return TaskRef(next(_task_ids), name)


def task_ref(task: asyncio.Task[object] | None) -> TaskRef:
    """Return asgitrace's identity for *task*, creating it on first sight.

    Ids come from a process-wide counter, so two tasks never share one even when CPython
    reuses ``id(task)``. ``None`` (code running outside any task) gets a new identity
    named ``"<no task>"`` each time.
    """
    if task is None:
        return new_task_ref("<no task>")
    ref = _refs.get(task)
    if ref is None:
        ref = _refs[task] = new_task_ref(task.get_name())
    return ref


_thread_refs: dict[int, TaskRef] = {}


def thread_ref() -> TaskRef:
    """asgitrace's identity for the current thread (a worker running sync code)."""
    import threading

    thread = threading.current_thread()
    ref = _thread_refs.get(thread.ident or 0)
    if ref is None or ref.name != thread.name:
        if len(_thread_refs) > 1000:
            _thread_refs.clear()
        ref = _thread_refs[thread.ident or 0] = new_task_ref(thread.name)
    return ref
