"""Driving a coroutine step by step, so that every suspension of a task is seen.

`Stepper` sits between a task and its coroutine. The task calls ``send``/``throw`` on it
as it would on the coroutine; the stepper forwards the call and, around it,

* times the step in the loop's `LoopMonitor` (so other traces can say what ran while
  they waited, and overlong steps become ``blocked`` events), and
* for tasks that belong to a trace, records ``resumed`` before the step and
  ``awaiting`` + ``yielded`` after it, walking the ``cr_await`` chain to the innermost
  app frame (only cheap references are kept; text is resolved lazily).

It is a plain class implementing the coroutine protocol (``send``, ``throw``, ``close``,
``__await__``) and forwarding ``cr_frame``, ``cr_await``, ``cr_code``, ``cr_running``,
``__name__`` and ``__qualname__``: asyncio accepts it as a task's coroutine on every
supported Python, and ``task.get_stack()``, ``print_stack()`` and ``repr(task)`` show the
user's code exactly as without asgitrace. (An ``async def`` or generator wrapper would
hide the user's frame behind its own.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator, Mapping
from types import CoroutineType
from typing import TYPE_CHECKING, Any, final

from .._support import log_failure
from ..trace import EventKind, TaskRef
from ..trace.codec import (
    SUSPENDED,
    entered_fields,
    resumed_fields,
    spawned_fields,
    task_done_fields,
)
from . import _returns
from ._context import new_task_ref, task_ref
from ._recorder import _seq
from ._walk import await_site, walk

if TYPE_CHECKING:
    from types import CodeType, FrameType, TracebackType

    from ._loopmon import LoopMonitor
    from ._recorder import Recorder

__all__ = ["Stepper"]

_RESUMED = EventKind.RESUMED
_TASK_DONE = EventKind.TASK_DONE
_ENTERED = EventKind.ENTERED
_SPAWNED = EventKind.SPAWNED


@final
class Stepper(Coroutine[Any, Any, Any]):
    """A coroutine wrapper that records each step of the coroutine it drives."""

    # `__name__` and `__qualname__` are slots (instance values: the wrapped coroutine's),
    # not a `__getattr__`: a class with `__getattr__` gets no specialized attribute
    # access, and every `self.x` of every step would pay for it.
    __slots__ = (
        "__name__",
        "__qualname__",
        "_app_obj",
        "_loop",
        "_returns",
        "coro",
        "mon",
        "parent",
        "rec",
        "ref",
        "request_task",
        "steps_at_suspend",
        "t_suspend",
        "timer_when",
    )

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        mon: LoopMonitor | None,
        rec: Recorder | None,
        ref: TaskRef | None = None,
        *,
        parent: TaskRef | None = None,
        request_task: bool = False,
    ) -> None:
        self.coro = coro
        name = getattr(coro, "__name__", None)
        self.__name__ = name if isinstance(name, str) else type(coro).__name__
        qualname = getattr(coro, "__qualname__", None)
        self.__qualname__ = qualname if isinstance(qualname, str) else self.__name__
        self.mon = mon
        self.rec = rec
        self.ref = ref
        self.request_task = request_task
        self.parent = parent
        self.t_suspend = 0
        self.timer_when: float | None = None
        self.steps_at_suspend = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._app_obj: Any = None
        self._returns: Any = None  # what gives the endpoint's return value (3.10/3.11)

    # -- the coroutine protocol -------------------------------------------------------

    def send(self, value: Any = None) -> Any:
        # The hot path (every step of every wrapped task), kept flat: `_before` inlined
        # and no `_step` frame (measured: ~150 ns of a ~1.7 us step; `throw`, rare, takes
        # the general path). Fail-open: the probe code around the step is guarded; an
        # error there disables this stepper's recording (logged once) and never reaches
        # the task. What the step raises (StopIteration at the end, the app's own
        # errors) passes through.
        mon = self.mon
        rec = self.rec
        if mon is None and rec is None:
            return self.coro.send(value)
        opened = False
        try:
            if rec is not None:
                if self.ref is None:
                    self._started(rec)
                if self.t_suspend:
                    self._resumed(rec, mon)
            # Last, so that nothing can fail between opening the step and running it.
            if mon is not None:
                opened = mon.begin(self.ref, rec)
        except Exception as exc:
            self._disable(exc)
        try:
            result = self.coro.send(value)
        except BaseException as exc:
            self._after(mon, opened, None, exc)
            raise
        self._after(mon, opened, result, None)
        return result

    __next__ = send

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> Any:
        if val is None and tb is None:
            return self._step(self.coro.throw, typ)
        coro: Any = self.coro  # the legacy three-argument form
        return self._step(lambda _: coro.throw(typ, val, tb), None)

    def close(self) -> None:
        self.coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        it: Any = self  # an iterator with send/throw, as a generator is
        return it  # type: ignore[no-any-return]

    def __iter__(self) -> Stepper:
        return self

    # -- what introspection sees: the wrapped coroutine ----------------------------------

    @property
    def cr_frame(self) -> FrameType | None:
        return getattr(self.coro, "cr_frame", None)

    @property
    def cr_await(self) -> Any:
        return getattr(self.coro, "cr_await", None)

    @property
    def cr_code(self) -> CodeType | None:
        return getattr(self.coro, "cr_code", None)

    @property
    def cr_running(self) -> bool:
        return bool(getattr(self.coro, "cr_running", False))

    @property
    def cr_suspended(self) -> bool:
        return bool(getattr(self.coro, "cr_suspended", False))

    @property
    def cr_origin(self) -> Any:
        return getattr(self.coro, "cr_origin", None)

    def __repr__(self) -> str:
        return repr(self.coro)

    # -- the step -----------------------------------------------------------------------

    def _step(self, call: Any, value: Any) -> Any:
        """`send`'s path for ``throw`` (rare: cancellation, errors thrown in)."""
        mon = self.mon
        rec = self.rec
        if mon is None and rec is None:
            return call(value)
        opened = False
        try:
            opened = self._before(mon, rec)
        except Exception as exc:
            self._disable(exc)
        try:
            result = call(value)
        except BaseException as exc:
            self._after(mon, opened, None, exc)
            raise
        self._after(mon, opened, result, None)
        return result

    def _before(self, mon: LoopMonitor | None, rec: Recorder | None) -> bool:
        if rec is not None:
            if self.ref is None:
                self._started(rec)
            if self.t_suspend:
                self._resumed(rec, mon)
        return mon.begin(self.ref, rec) if mon is not None else False

    def _after(
        self, mon: LoopMonitor | None, opened: bool, result: Any, exc: BaseException | None
    ) -> None:
        ended = mon is None
        try:
            if self._returns is not None:
                _returns.step_ended()
            if mon is not None:
                mon.end(opened)
                ended = True
            if exc is None:
                if self.rec is not None:
                    self._suspended(self.rec, result, mon)
            elif isinstance(exc, StopIteration):
                self._done(self.rec, "completed")
            elif isinstance(exc, asyncio.CancelledError):
                self._done(self.rec, "cancelled")
            else:
                self._done(self.rec, "failed", type(exc).__name__)
        except Exception as error:
            if not ended and mon is not None:
                mon.abandon()  # keep the loop's step accounting right for everyone else
            self._disable(error)

    def _disable(self, exc: Exception) -> None:
        log_failure("the coroutine stepper", exc)
        self.rec = None
        self.mon = None

    def _started(self, rec: Recorder) -> None:
        """First step of a child task: it has an identity now, and it "starts"."""
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        self.ref = new_task_ref(task.get_name()) if task is not None else task_ref(None)
        if self.parent is not None:
            parent = self.parent
            late = rec.response_done
            fields = spawned_fields(parent.id, parent.name, self.__qualname__, late)
            rec.add(_SPAWNED, fields, self.ref)

    def _suspended(self, rec: Recorder, result: Any, mon: LoopMonitor | None) -> None:
        endpoint = rec.endpoint_code
        if endpoint is None and self.request_task and not rec.entered:
            endpoint = rec.endpoint_code = endpoint_code(rec.scope)
        # The innermost app coroutine of the last suspension, if it is still suspended,
        # is on this task's awaiting chain: start there instead of walking the ~20
        # framework wrappers above it again.
        start = self._app_obj
        if (
            start is None
            or start.cr_await is None
            or rec.watcher is not None
            or (endpoint is not None and not rec.entered)
        ):
            start = self.coro
        w = walk(start, rec.is_app, endpoint, watch=rec.watcher)
        app_obj = w.app_obj
        self._app_obj = app_obj if type(app_obj) is CoroutineType else None
        ref = self.ref or rec.task
        if w.saw_target and not rec.entered:
            # Derived, not observed: the endpoint started during the step that just ended.
            rec.entered = True
            rec.add_at_step_start(_ENTERED, entered_fields(endpoint, derived=True), ref)
        thread = (
            w.thread_func is not None
            and endpoint is not None
            and not _returns.EXACT
            and _returns.thread_runs(w.thread_func, endpoint)
        )
        if not _returns.EXACT and self._returns is None and (w.target_obj is not None or thread):
            self._returns = _returns.arm(w.target_obj, w.leaf, thread)
        site = await_site(w, result is None, rec.is_app)
        self.timer_when = w.timer_when
        t = rec.clock()
        events = rec.events
        if len(events) + rec.folded + 2 <= rec.limit:
            # One record for the `awaiting` and `yielded` events (`codec.expand`).
            rec.folded += 1
            late = rec.response_done
            events.append((next(_seq), t, SUSPENDED, ref.id, ref.name, site, self._ready(), late))
        else:
            rec.dropped += 2
        if thread and not rec.entered:
            # A sync endpoint: it starts in the worker thread after this suspension.
            rec.entered = True
            rec.add(_ENTERED, entered_fields(endpoint, derived=True, thread="worker thread"), ref)
        self.t_suspend = t
        if mon is not None:
            self.steps_at_suspend = mon.steps

    def _ready(self) -> int | None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # asyncio's ready queue; uvloop has none
        return len(ready) if ready is not None else None

    def _resumed(self, rec: Recorder, mon: LoopMonitor | None) -> None:
        t = rec.clock()
        lag = None
        if self.timer_when is not None and self._loop is not None:
            late = self._loop.time() - self.timer_when  # -inf: a sleep(inf) woken early
            lag = int(late * 1e9) if late > 0 else 0
            self.timer_when = None
        # Steps other tasks ran between the suspension and this resume.
        end = mon.steps if mon is not None else -1
        fields = resumed_fields(
            t - self.t_suspend, lag, rec.response_done, self.steps_at_suspend, end, rec.task.id
        )
        ref = self.ref or rec.task
        if len(rec.events) + rec.folded < rec.limit:
            rec.events.append((next(_seq), t, "resumed", ref.id, ref.name, fields))
        else:
            rec.dropped += 1
        self.t_suspend = 0
        if self._returns is not None:
            self._returns = _returns.resume(self._returns, rec, ref)

    def _done(self, rec: Recorder | None, outcome: str, exception: str | None = None) -> None:
        if rec is None or self.request_task:
            return
        rec.add(_TASK_DONE, task_done_fields(outcome, exception, rec.response_done), self.ref)


def ref_of(task: asyncio.Task[Any] | None, rec: Recorder | None) -> TaskRef:
    """asgitrace's identity for *task*, cheaply: the request's own task and the tasks
    the hook wrapped carry theirs; any other task gets one from the weak registry."""
    if task is None:
        return task_ref(None)
    if rec is not None and task is rec.task_obj:
        return rec.task
    coro = task.get_coro()
    if type(coro) is Stepper and coro.ref is not None:
        return coro.ref
    return task_ref(task)


def endpoint_code(scope: Mapping[str, Any]) -> Any:
    """The code of the endpoint the router chose for *scope* (``None`` before routing)."""
    return getattr(scope.get("endpoint"), "__code__", None)
