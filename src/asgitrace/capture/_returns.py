"""The endpoint's return value before Python 3.12 (no ``sys.monitoring`` there).

Two cheap, faithful sources, armed only once a suspension showed the endpoint:

* A sync endpoint runs in a worker thread and the request task awaits that thread's
  future: when the task resumes, the future's result *is* what the endpoint returned.
* An async endpoint seen suspended: for the steps that resume it, a profile hook
  (``sys.setprofile``, this thread only) watches that one frame and removes itself at
  the frame's first ``return`` event: the endpoint returning (its value) or suspending
  again (a ``return`` event too, told apart by the instruction, ``RETURN_VALUE``).
  The hook is never installed over another profiler.

An async endpoint that never suspends gives neither: its value stays unknown.
"""

from __future__ import annotations

import asyncio
import dis
import gc
import sys
import types
from typing import TYPE_CHECKING, Any, Final

from .._support import log_failure
from ..trace import EventKind
from ..trace.codec import returned_fields
from ._walk import _unwrap_partial

if TYPE_CHECKING:
    from ..trace import TaskRef
    from ._recorder import Recorder

__all__ = ["EXACT", "ReturnHook", "arm", "last_await", "resume", "step_ended", "thread_runs"]

EXACT: Final = sys.version_info >= (3, 12)
"""``sys.monitoring`` reports returns exactly: nothing here is used."""

_RETURN_VALUE: Final = dis.opmap.get("RETURN_VALUE", -1)


def thread_runs(func: Any, code: Any) -> bool:
    """Whether the worker thread's *func* runs the endpoint *code* (maybe through partials)."""
    func, given = _unwrap_partial(func)
    return any(getattr(f, "__code__", None) is code for f in (func, *given))


def arm(target: Any, leaf: Any, thread: bool) -> Any:
    """What to watch after a suspension that showed the endpoint: its suspended
    coroutine, or (a sync endpoint) the future of its worker thread."""
    if thread:
        if not isinstance(leaf, asyncio.Future):  # the future's iterator hides it; gc finds it
            leaf = next((r for r in gc.get_referents(leaf) if isinstance(r, asyncio.Future)), None)
        return leaf
    return target if type(target) is types.CoroutineType else None


def resume(watched: Any, rec: Recorder, ref: TaskRef) -> Any:
    """At a resume of the task: record the return if it is known, else arm the hook for
    this step. Returns what to keep watching (``None`` when done)."""
    if rec.returned:
        return None
    if isinstance(watched, asyncio.Future):
        if watched.done() and not watched.cancelled() and watched.exception() is None:
            _record(rec, rec.endpoint_code, watched.result(), None, ref)
            return None
        return None if watched.done() else watched
    frame = watched.cr_frame
    if frame is None:
        return None  # finished unseen (an exception, or a profiler was in the way)
    if sys.getprofile() is None and last_await(frame.f_code, frame.f_lasti):
        sys.setprofile(ReturnHook(frame, rec, ref))
    return watched


_AWAIT_OPS: Final = frozenset({"GET_AWAITABLE", "GET_ANEXT", "YIELD_FROM", "SEND", "YIELD_VALUE"})
_JUMPS: Final = frozenset(dis.hasjabs) | frozenset(dis.hasjrel)
_last: dict[tuple[int, int], bool] = {}


def last_await(code: types.CodeType, lasti: int) -> bool:
    """Whether the await the frame is stopped at (instruction *lasti*) is its last one:
    no await after it, and no jump back over it (a loop). Only then is the hook armed,
    so that it profiles the one step that ends in the endpoint's ``return``."""
    key = (id(code), lasti)
    verdict = _last.get(key)
    if verdict is None:
        verdict = True
        for ins in dis.get_instructions(code):
            if ins.offset <= lasti or (ins.opname == "YIELD_FROM" and ins.offset == lasti + 2):
                continue  # 3.10 stops one instruction before the YIELD_FROM it repeats
            if ins.opname in _AWAIT_OPS or (
                ins.opcode in _JUMPS
                and ins.opname != "JUMP_BACKWARD_NO_INTERRUPT"  # the await's own send loop
                and isinstance(ins.argval, int)
                and ins.argval <= lasti
            ):
                verdict = False
                break
        if len(_last) > 10_000:
            _last.clear()
        _last[key] = verdict
    return verdict


def step_ended() -> None:
    """After a step that may have armed the hook: take it off if it is still on."""
    if type(sys.getprofile()) is ReturnHook:
        sys.setprofile(None)


class ReturnHook:
    """A profile function watching one frame for its next ``return`` event."""

    __slots__ = ("frame", "rec", "ref")

    def __init__(self, frame: types.FrameType, rec: Recorder, ref: TaskRef) -> None:
        self.frame = frame
        self.rec = rec
        self.ref = ref

    def __call__(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if frame is not self.frame or event != "return":
            return
        sys.setprofile(None)
        try:
            code = frame.f_code
            if code.co_code[frame.f_lasti] == _RETURN_VALUE and not self.rec.returned:
                _record(self.rec, code, arg, frame, self.ref)
        except Exception as exc:
            log_failure("the return-value hook", exc)


def _record(
    rec: Recorder, code: Any, value: Any, frame: types.FrameType | None, ref: TaskRef
) -> None:
    rec.returned = True
    name = str(getattr(code, "co_qualname", None) or getattr(code, "co_name", "?"))
    watched = rec.watcher([frame]) if rec.watcher is not None and frame is not None else None
    text = rec.redactor.repr_of(value)
    rec.add(EventKind.RETURNED, returned_fields(name, text, watched, None), ref)
