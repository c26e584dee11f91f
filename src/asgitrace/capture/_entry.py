"""Exact ``entered`` events and endpoint return values, from ``sys.monitoring`` (3.12+).

Only *local* events are used, set on the code objects of routed endpoints and nothing
else: no global tracing, no cost for any other function. The callbacks check the
current request's recorder and return at once when there is none (untraced calls).

On Python 3.10/3.11 there is no ``sys.monitoring``: `watch` does nothing and the stepper
derives ``entered`` from the first suspension (or the first message sent) that shows
the endpoint's frame, marking it ``derived``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterable, Mapping
from types import CodeType
from typing import TYPE_CHECKING, Any, Final

from .._support import log_failure
from ..trace import EventKind, TaskRef
from ..trace.codec import entered_fields, returned_fields
from ._accel import endpoint_code, ref_of
from ._context import CURRENT, thread_ref

if TYPE_CHECKING:
    from ._recorder import Recorder

__all__ = ["AVAILABLE", "endpoints_of", "watch", "watch_endpoint", "watching"]

AVAILABLE: Final = sys.version_info >= (3, 12)

_tool: int | None = None
# id(code) -> code: keyed by id, as `_walk.AppCode` is (hashing a code object is slow),
# the value keeping the id the code's own.
_watched: dict[int, CodeType] = {}
_lock = threading.Lock()  # taken without waiting: a loop thread never waits for it


def _on_start(code: CodeType, offset: int) -> Any:  # pragma: no cover - see below
    # An exception escaping a sys.monitoring callback would surface in the endpoint
    # itself: every callback is guarded (fail-open).
    try:
        _started(code)
    except Exception as exc:
        log_failure("sys.monitoring entry callback", exc)
    return None


# Coverage cannot see inside sys.monitoring callbacks: the two thin wrappers above and
# here are excluded, and tests call the functions they wrap directly.
def _on_return(code: CodeType, offset: int, value: Any) -> Any:  # pragma: no cover
    try:
        _returned(code, value)
    except Exception as exc:
        log_failure("sys.monitoring return callback", exc)
    return None


def _started(code: CodeType) -> None:  # pragma: before-3-12
    rec = CURRENT.get()
    if rec is not None and not rec.entered:
        rec.entered = True
        task, thread = _where(rec)
        rec.add(EventKind.ENTERED, entered_fields(code, derived=False, thread=thread), task)


def _returned(code: CodeType, value: Any) -> None:  # pragma: before-3-12
    rec = CURRENT.get()
    if rec is not None and rec.entered and not rec.returned:
        rec.returned = True
        function = getattr(code, "co_qualname", code.co_name)
        text = rec.redactor.repr_of(value)
        watched = None
        if rec.watcher is not None:
            watched = rec.watcher([sys._getframe(2)])  # the returning frame
        task, thread = _where(rec)
        rec.add(EventKind.RETURNED, returned_fields(function, text, watched, thread), task)


def _where(rec: Recorder) -> tuple[TaskRef, str | None]:  # pragma: before-3-12
    """The task running now, or in a worker thread (a sync endpoint) the thread and its name."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return thread_ref(), threading.current_thread().name
    return ref_of(asyncio.current_task(), rec), None


def _claim_tool() -> int | None:  # pragma: before-3-12
    global _tool
    if _tool is not None:
        return _tool
    monitoring: Any = getattr(sys, "monitoring")  # noqa: B009 - absent before 3.12
    for tool in (4, 3, 5, 2):
        if monitoring.get_tool(tool) is None:
            monitoring.use_tool_id(tool, "asgitrace")
            monitoring.register_callback(tool, monitoring.events.PY_START, _on_start)
            monitoring.register_callback(tool, monitoring.events.PY_RETURN, _on_return)
            _tool = tool
            return tool
    return None


def watch(codes: Iterable[CodeType]) -> None:
    """Turn on start/return events for these endpoint code objects (3.12+; idempotent)."""
    if not AVAILABLE:  # pragma: since-3-12
        return
    _watch(codes)  # pragma: before-3-12


def watching(code: CodeType) -> bool:
    """Whether ``sys.monitoring`` reports the starts of *code* (3.12+, once watched)."""
    return id(code) in _watched


def watch_endpoint(scope: Mapping[str, Any]) -> None:
    """After a request: watch the endpoint it was routed to, for the next requests."""
    code = endpoint_code(scope)
    if code is not None and id(code) not in _watched:
        watch((code,))


def _watch(codes: Iterable[CodeType]) -> None:  # pragma: before-3-12
    # Never waits: a loop thread calls this after a request. If another thread is
    # watching codes at this very moment, this request's endpoint is watched after the
    # next request instead (its `entered` stays derived until then).
    if not _lock.acquire(blocking=False):
        return
    try:
        new = [c for c in codes if id(c) not in _watched]
        if not new:
            return
        tool = _claim_tool()
        if tool is None:
            return  # every tool id is taken: entered stays derived
        monitoring: Any = getattr(sys, "monitoring")  # noqa: B009 - absent before 3.12
        events = monitoring.events.PY_START | monitoring.events.PY_RETURN
        for code in new:
            monitoring.set_local_events(tool, code, events)
            _watched[id(code)] = code
    except Exception as exc:
        log_failure("sys.monitoring endpoint events", exc)
    finally:
        _lock.release()


def endpoints_of(app: Any, depth: int = 0) -> list[CodeType]:
    """The code objects of the endpoint functions routed by *app* (Starlette/FastAPI).

    Follows ``.app`` links through middleware and ``.routes`` through routers and mounts;
    anything else is ignored.
    """
    found: list[CodeType] = []
    seen: set[int] = set()
    _collect(app, found, seen, depth)
    return found


def _collect(obj: Any, found: list[CodeType], seen: set[int], depth: int) -> None:
    if obj is None or depth > 40 or id(obj) in seen:
        return
    seen.add(id(obj))
    routes = getattr(obj, "routes", None)
    if isinstance(routes, list | tuple):
        for route in routes:
            code = getattr(getattr(route, "endpoint", None), "__code__", None)
            if isinstance(code, CodeType):
                found.append(code)
            _collect(getattr(route, "app", None), found, seen, depth + 1)
    for attr in ("app", "router", "middleware_stack"):
        inner = obj.__dict__.get(attr) if hasattr(obj, "__dict__") else None
        if inner is not None:
            _collect(inner, found, seen, depth + 1)
