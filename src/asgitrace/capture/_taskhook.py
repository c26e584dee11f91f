"""The asyncio task factory hook: every task's steps timed, traced tasks recorded.

Installed lazily, once per event loop, by the first traced request on that loop
(pytest and ``asyncio.run`` create many loops; each gets its own hook and monitor).

* It chains the factory that was installed before (``loop.get_task_factory()``), keeping
  its semantics, and forwards every keyword (``name``, ``context``, ``eager_start``...)
  untouched: the keywords that reach a factory changed between 3.13 patch releases.
* ``asyncio.eager_task_factory`` is not wrapped but rebuilt with
  ``asyncio.create_eager_task_factory`` around our task constructor: anyio (hence
  Starlette) recognises the eager factory by its code object, and a wrapper around it
  broke anyio task groups when measured.
* A task created while a trace is bound (the request's context variable, or the
  ``context=`` passed in) belongs to that trace: ``spawned`` now, its suspensions as for
  the request's own task, ``task_done`` when it ends.
* The factory may be called when no loop runs (``asyncio.Runner`` shutdown): it never
  raises because of asgitrace.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from contextvars import Context
from typing import Any, Final

from .._support import log_failure
from ._accel import Stepper, ref_of
from ._context import CURRENT
from ._loopmon import _WATCHDOG, LoopMonitor

__all__ = ["install", "monitor_of", "uninstall"]

_MARK: Final = "asgitrace_monitor"
_TaskFactory = Callable[..., "asyncio.Future[Any]"]

# CPython 3.13.0-3.13.2 call `task.set_name(name)` after any factory, naming unnamed
# tasks "None" (gh-130033); on those versions the pure-Python loop's create_task is
# replaced, on that loop instance only, by one that passes the name to the factory.
_NEEDS_NAME_FIX: Final = (3, 13, 0) <= sys.version_info[:3] < (3, 13, 3)


def monitor_of(loop: asyncio.AbstractEventLoop) -> LoopMonitor | None:
    """The monitor of *loop*'s asgitrace hook, or ``None`` when it has none."""
    return getattr(loop.get_task_factory(), _MARK, None)


def _wrap(coro: Any, mon: LoopMonitor, context: Context | None) -> Any:
    rec = context.get(CURRENT) if context is not None else CURRENT.get()
    if rec is None and not mon.active:
        # No traced request is in flight on this loop: nobody will ask what this task
        # did, so it is not wrapped at all (unsampled traffic stays nearly free).
        return coro
    if not asyncio.iscoroutine(coro) or isinstance(coro, Stepper):
        return coro
    parent = None
    if rec is not None:
        try:
            parent = ref_of(asyncio.current_task(), rec)
        except RuntimeError:  # no running loop (e.g. during asyncio.Runner shutdown)
            parent = rec.task
    return Stepper(coro, mon, rec, parent=parent)


def _wrap_safely(coro: Any, mon: LoopMonitor, kwargs: dict[str, Any]) -> Any:
    try:
        return _wrap(coro, mon, kwargs.get("context"))
    except Exception as exc:
        log_failure("task hook", exc)
        return coro


def install(loop: asyncio.AbstractEventLoop, threshold_ns: int) -> LoopMonitor:
    """Install the hook on *loop* (idempotent); return the loop's monitor."""
    previous = loop.get_task_factory()
    existing = getattr(previous, _MARK, None)
    if isinstance(existing, LoopMonitor):
        if threshold_ns < existing.threshold_ns:  # a stricter tracer on the same loop
            existing.threshold_ns = threshold_ns
            _WATCHDOG.watch(existing)  # so that it samples often enough for it
        return existing
    mon = LoopMonitor(threshold_ns)
    factory: Any
    eager = getattr(asyncio, "eager_task_factory", None)
    if previous is not None and previous is eager:

        def constructor(  # pragma: before-3-12
            coro: Coroutine[Any, Any, Any], **kwargs: Any
        ) -> asyncio.Task[Any]:
            return asyncio.Task(_wrap_safely(coro, mon, kwargs), **kwargs)

        factory = asyncio.create_eager_task_factory(constructor)  # type: ignore[attr-defined,unused-ignore]
    else:

        def factory(
            loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
        ) -> asyncio.Future[Any]:
            # Fast path first: no traced request in flight and none bound here.
            context = kwargs.get("context")
            bound = context.get(CURRENT) if context is not None else CURRENT.get()
            if mon.active or bound is not None:
                coro = _wrap_safely(coro, mon, kwargs)
            if previous is None:
                return asyncio.Task(coro, loop=loop, **kwargs)
            task: asyncio.Future[Any] = previous(loop, coro, **kwargs)
            return task

    setattr(factory, _MARK, mon)
    setattr(factory, "asgitrace_previous", previous)  # noqa: B010 - a function attribute
    loop.set_task_factory(factory)
    if _NEEDS_NAME_FIX:  # pragma: not-3-13-early - the fix is tested directly
        _fix_task_names(loop, factory)
    return mon


def _fix_task_names(loop: asyncio.AbstractEventLoop, factory: _TaskFactory) -> None:
    from asyncio.base_events import BaseEventLoop

    if type(loop).create_task is not BaseEventLoop.create_task:
        return

    def create_task(
        coro: Any, *, name: str | None = None, context: Context | None = None
    ) -> asyncio.Task[Any]:
        if loop.get_task_factory() is not factory:  # our factory was replaced: stand aside
            original: Any = BaseEventLoop.create_task
            task: asyncio.Task[Any] = original(loop, coro, name=name, context=context)
            return task
        kwargs: dict[str, Any] = {}
        if name is not None:
            kwargs["name"] = name
        if context is not None:
            kwargs["context"] = context
        created: Any = factory(loop, coro, **kwargs)
        return created  # type: ignore[no-any-return]

    loop.create_task = create_task  # type: ignore[method-assign]


def uninstall(loop: asyncio.AbstractEventLoop) -> None:
    """Remove the hook from *loop*, restoring the factory it chained (if still ours)."""
    factory = loop.get_task_factory()
    if getattr(factory, _MARK, None) is None:
        return
    loop.set_task_factory(getattr(factory, "asgitrace_previous", None))
    if "create_task" in getattr(loop, "__dict__", {}):
        del loop.__dict__["create_task"]
