"""Where a suspended coroutine chain stopped: app frames, await targets, lazy source text.

At each suspension the capture layer walks the awaiting chain from the outermost
coroutine (``cr_await`` → ``cr_await`` → ...) and keeps only cheap raw material: the
innermost *app* frame's code object and line number, and the innermost library frame's
code object, as the raw fields of `asgitrace.trace.codec.awaiting_fields`. Source text,
names and targets are decoded later, when a view asks.
"""

from __future__ import annotations

import gc
import os
import sysconfig
import types
from collections.abc import Callable
from typing import Any, Final

from .._support import log_failure
from ..trace.codec import awaiting_fields

__all__ = [
    "AppCode",
    "CodeRule",
    "Walk",
    "await_site",
    "default_is_app_file",
    "walk",
]

CodeRule = Callable[[str], bool]
"""Decides from a code object's file name whether it is the app's own code."""


def _library_roots() -> tuple[str, ...]:
    roots = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.realpath(path) + os.sep)
            roots.add(path + os.sep)
    here = os.path.dirname(os.path.abspath(__file__))
    roots.add(os.path.dirname(here) + os.sep)  # asgitrace itself (this is asgitrace/capture/)
    return tuple(sorted(roots))


_LIBRARY_ROOTS: Final = _library_roots()


def default_is_app_file(filename: str) -> bool:
    """The default rule: app code is any file outside the standard library,
    ``site-packages``/``dist-packages`` and asgitrace itself, and not ``<frozen ...>``
    or other pseudo-files.

    Pass ``Tracer(app_code=...)`` a function of the file name to change it, e.g. to
    count a package installed in site-packages as yours.
    """
    if not filename or filename.startswith("<"):
        return False
    if "site-packages" in filename or "dist-packages" in filename:
        return False
    return not filename.startswith(_LIBRARY_ROOTS)


class AppCode:
    """A cache of the app-code rule per code object (the rule is called once per code).

    The cache is keyed by ``id(code)``: hashing a code object hashes its constants, the
    code of nested functions included, at every lookup (over a microsecond for a big
    framework function), and the walk looks up every frame of the chain. `_alive` keeps
    the cached code objects alive, so that their ids stay theirs.
    """

    __slots__ = ("_alive", "_cache", "rule")

    def __init__(self, rule: CodeRule | None = None) -> None:
        self.rule: CodeRule = rule or default_is_app_file
        self._cache: dict[int, bool] = {}
        self._alive: list[types.CodeType] = []

    def file(self, filename: str) -> bool:
        """Apply the rule to a file name (uncached; a rule that raises means "not app")."""
        try:
            return bool(self.rule(filename))
        except Exception as exc:
            log_failure("the app_code rule", exc)
            return False

    def __call__(self, code: types.CodeType) -> bool:
        result = self._cache.get(id(code))
        if result is None:
            result = self.file(code.co_filename)
            if len(self._cache) > 50_000:  # bounded: code objects can be generated
                self._cache.clear()
                self._alive.clear()
            self._alive.append(code)
            self._cache[id(code)] = result
        return result


_CoroutineType: Final = types.CoroutineType
_GeneratorType: Final = types.GeneratorType


def _next_in_chain(obj: Any) -> tuple[types.FrameType | None, Any]:
    """The frame of *obj* and what it is awaiting, for any awaitable in a chain."""
    tp = type(obj)
    if tp is _CoroutineType:
        return obj.cr_frame, obj.cr_await
    if tp is _GeneratorType:
        return obj.gi_frame, obj.gi_yieldfrom
    if tp.__name__ == "async_generator_asend" or tp.__name__ == "async_generator_athrow":
        # The awaitable of `agen.asend()` hides its generator; gc finds it.
        for ref in gc.get_referents(obj):
            if isinstance(ref, types.AsyncGeneratorType):
                return ref.ag_frame, ref.ag_await
        return None, None
    if isinstance(obj, types.AsyncGeneratorType):
        return obj.ag_frame, obj.ag_await
    frame = getattr(obj, "cr_frame", None)  # asgitrace's own wrappers forward these
    if isinstance(frame, types.FrameType):
        return frame, getattr(obj, "cr_await", None)
    return None, None


class Walk:
    """Raw result of one walk: cheap references only."""

    __slots__ = (
        "app_code",
        "app_line",
        "app_obj",
        "leaf",
        "leaf_code",
        "saw_target",
        "target_obj",
        "thread_func",
        "timer_when",
        "watched",
    )

    def __init__(self) -> None:
        self.watched: dict[str, str] | None = None
        self.app_code: types.CodeType | None = None
        self.app_line: int | None = None
        self.app_obj: Any = None
        self.leaf_code: types.CodeType | None = None
        self.leaf: Any = None
        self.timer_when: float | None = None
        self.thread_func: Any = None
        self.saw_target = False
        self.target_obj: Any = None


_SLEEP_CODES: set[int] = set()  # ids of asyncio.sleep's code (a module function's: stable)
_THREAD_NAMES: Final = frozenset({"run_sync_in_worker_thread", "to_thread", "run_in_threadpool"})


def _note_sleep_code() -> None:
    import asyncio

    _SLEEP_CODES.add(id(asyncio.sleep.__code__))


_note_sleep_code()


def walk(
    coro: Any,
    is_app: AppCode,
    target: types.CodeType | None = None,
    limit: int = 200,
    watch: Callable[[list[types.FrameType]], dict[str, str]] | None = None,
) -> Walk:
    """Walk the chain of what *coro* awaits, down to the innermost awaitable.

    Args:
        coro: Where to start: the outermost coroutine (or asgitrace wrapper) of a
            suspended task, or an app coroutine of that chain known to be suspended.
        is_app: The app-code rule.
        target: A code object to look for (the endpoint's); `Walk.saw_target` says
            whether the chain passes through it.
        limit: Maximum depth walked.
        watch: Snapshot of watched variables, given the app frames (outermost first).
    """
    # Every suspension of every traced task runs this: locals only in the loop, one
    # `Walk` built at the end, and the two common levels (a coroutine, a generator
    # such as asyncio's `__sleep0`) read without a call.
    app_objs: list[Any] | None = [] if watch is not None else None
    app_obj: Any = None
    app_frame: types.FrameType | None = None
    app_code: types.CodeType | None = None
    leaf_obj: Any = None
    leaf_frame: types.FrameType | None = None
    leaf_code: types.CodeType | None = None
    target_obj: Any = None
    saw_target = False
    thread_func: Any = None
    verdicts = is_app._cache
    obj = coro
    for _ in range(limit):
        frame: types.FrameType | None
        tp = type(obj)
        if tp is _CoroutineType:
            # Without `cr_frame`: reading it makes CPython build a frame object for
            # the coroutine (one allocation per level of a fresh request's chain).
            # The code is enough to judge a level; frames are fetched below for the
            # few levels whose line or locals are wanted.
            frame = None
            code = obj.cr_code
            nxt = obj.cr_await
            if nxt is None and obj.cr_frame is None:  # a finished coroutine
                break
        elif tp is _GeneratorType:
            frame = obj.gi_frame
            if frame is None:
                break
            code = frame.f_code
            nxt = obj.gi_yieldfrom
        else:
            frame, nxt = _next_in_chain(obj)
            if frame is None:
                break
            code = frame.f_code
        if code is target:
            saw_target = True
            target_obj = obj
        app = verdicts.get(id(code))
        if app is None:
            app = is_app(code)
        if app:
            app_obj, app_frame, app_code = obj, frame, code
            if app_objs is not None:
                app_objs.append((obj, frame))
        else:
            leaf_obj, leaf_frame, leaf_code = obj, frame, code
            if thread_func is None and code.co_name in _THREAD_NAMES:
                thread_func = _frame_of(obj, frame).f_locals.get("func")
        if nxt is None:
            break
        obj = nxt
    result = Walk()
    result.leaf = obj
    result.saw_target = saw_target
    result.target_obj = target_obj
    result.thread_func = thread_func
    if watch is not None and app_objs:
        result.watched = watch([_frame_of(o, f) for o, f in app_objs])
    if app_obj is not None:
        result.app_obj = app_obj
        result.app_code = app_code
        result.app_line = _frame_of(app_obj, app_frame).f_lineno
    if leaf_obj is not None:
        result.leaf_code = leaf_code
        if id(leaf_code) in _SLEEP_CODES:
            # asyncio.sleep's timer handle says when the sleep was due: the loop lag
            # is the resume time minus that.
            handle = _frame_of(leaf_obj, leaf_frame).f_locals.get("h")
            when = getattr(handle, "when", None)
            if when is not None:
                result.timer_when = when()
    return result


def _frame_of(obj: Any, frame: types.FrameType | None) -> types.FrameType:
    """The frame of a chain level: the one already read, or the coroutine's."""
    chain_frame: types.FrameType = obj.cr_frame if frame is None else frame
    return chain_frame


def _unwrap_partial(func: Any) -> tuple[Any, list[Any]]:
    """``partial(f, g, key=h)`` → (f, [g, h]): the function and the callables it was given."""
    given: list[Any] = []
    for _ in range(10):
        inner = getattr(func, "func", None)
        if inner is None or not callable(inner):
            break
        given.extend(a for a in getattr(func, "args", ()) if callable(a))
        given.extend(v for v in getattr(func, "keywords", {}).values() if callable(v))
        func = inner
    return func, given


def _thread_target(func: Any, is_app: AppCode) -> str:
    """Name what runs in the worker thread, preferring the app's own function: frameworks
    pass the endpoint to a wrapper of their own (``partial(run, function=endpoint)``)."""
    func, given = _unwrap_partial(func)
    for candidate in (func, *given):
        code = getattr(candidate, "__code__", None)
        if code is not None and is_app(code):
            return _callable_name(candidate)
    return _callable_name(func)


def _callable_name(func: Any) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return str(name) if name else type(func).__qualname__


_SITES: dict[tuple[Any, ...], tuple[Any, ...]] = {}
"""``awaiting`` fields by (app code, line, leaf code, leaf type, cooperative): the same
await of the same code gives the same raw tuple, built once (the code ids in it keep the
code objects alive in the code table, so the ids in the key stay theirs)."""


def await_site(w: Walk, cooperative: bool, is_app: AppCode) -> tuple[Any, ...]:
    """The raw fields of an ``awaiting`` event (`asgitrace.trace.codec.awaiting_fields`)."""
    leaf = w.leaf
    if w.thread_func is None and w.watched is None:
        key = (id(w.app_code), w.app_line, id(w.leaf_code), type(leaf), cooperative)
        site = _SITES.get(key)
        if site is None:
            if len(_SITES) >= 10_000:  # bounded: code can be generated
                _SITES.clear()
            leaf_type = type(leaf).__name__ if leaf is not None else None
            site = _SITES[key] = awaiting_fields(
                w.app_code, w.app_line, w.leaf_code, leaf_type, None, cooperative, None
            )
        return site
    thread = _thread_target(w.thread_func, is_app) if w.thread_func is not None else None
    leaf_type = type(leaf).__name__ if leaf is not None else None
    return awaiting_fields(
        w.app_code, w.app_line, w.leaf_code, leaf_type, thread, cooperative, w.watched
    )


def snapshot(
    names: tuple[str, ...], redactor: Any, frames: list[types.FrameType]
) -> dict[str, str]:
    """Bounded, redacted reprs of the watched *names*, innermost app frame first."""
    from .._support import REDACTED

    out: dict[str, str] = {}
    for frame in reversed(frames):
        local = frame.f_locals
        for name in names:
            if name not in out and name in local:
                secret = redactor.is_secret(name)
                out[name] = REDACTED if secret else redactor.repr_of(local[name])
    return out
