"""`TraceMiddleware`: the pure-ASGI probe that opens one trace per request."""

from __future__ import annotations

import asyncio
import inspect
import sys
from types import CoroutineType
from typing import TYPE_CHECKING, Any, final, overload

from .._support import log_failure
from ..trace import EventKind
from ..trace.codec import (
    decode_message,
    end_fields,
    ends_response,
    entered_fields,
    message_fields,
    msg_fields,
    open_fields,
)
from . import _entry
from ._accel import Stepper, endpoint_code, ref_of
from ._context import CURRENT
from ._recorder import Recorder
from ._taskhook import install, monitor_of
from ._tracer import Tracer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._support import ASGIApp, Message, Receive, Scope, Send

__all__ = ["TraceMiddleware", "instrument"]

_RECEIVED = EventKind.RECEIVED
_SENT = EventKind.SENT
_DISCONNECTS = frozenset({"http.disconnect", "websocket.disconnect"})
_STARTS = frozenset({"http.response.start", "websocket.http.response.start"})


def _record_sent(rec: Recorder, message: Message) -> None:
    # Per message of every traced response: lazy raw fields (see `message_fields`),
    # the common HTTP messages first.
    kind = message["type"]
    if not rec.entered:
        _derive_entered(rec)
    if kind == "http.response.body":
        more = bool(message.get("more_body", False))
        if not more:
            rec.response_done = True
        body = message.get("body")
        fields = msg_fields(kind, None if body is None else len(body), more, None, None, None, None)
    elif kind in _STARTS:
        rec.status = status = int(message["status"])
        content_type = None
        headers = message.get("headers")
        if headers:
            rec.response_headers = redacted = rec.redactor.raw_headers_of(headers)
            for name, value in redacted:
                if name == b"content-type" or name.lower() == b"content-type":
                    content_type = value.decode("latin-1")
                    break
        fields = msg_fields(kind, None, None, None, status, content_type, None)
    else:
        if kind == "websocket.accept":
            rec.status = 101
            fields = message_fields(message, status=101)
        elif kind == "websocket.close":
            fields = message_fields(message, code=message.get("code", 1000))
        else:
            fields = message_fields(message)
        if ends_response(decode_message(fields)):
            rec.response_done = True
    rec.add(_SENT, fields)


def _derive_entered(rec: Recorder) -> None:
    """Before the first message out: has the endpoint (if routed) run?

    Decided once. Where ``sys.monitoring`` watches the endpoint's code (3.12+) it would
    have said so. Otherwise: yes if its frame is on the stack (it sends itself), or if
    no exception is being handled (it returned, this is its response); when one is
    (an exception handler is sending), only if the endpoint is in its traceback: a 422
    from validation or a 401 from a dependency never ran it.
    """
    code = endpoint_code(rec.scope)
    if code is None:
        return
    rec.entered = True  # decided: it will not start after the response did
    if _entry.watching(code) or not _ran(code):
        return
    task = ref_of(asyncio.current_task(), rec)
    rec.add_at_step_start(EventKind.ENTERED, entered_fields(code, derived=True), task)


def _ran(code: Any) -> bool:
    """Whether the endpoint *code* ran, judged while the response is being sent."""
    exc: BaseException | None = sys.exc_info()[1]
    if exc is None:
        return True  # the common case first: no frame walk (a frame object per level)
    frame: Any = sys._getframe(2)
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    for _ in range(8):  # the handled exception and the ones it was raised during
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code is code:
                return True
            tb = tb.tb_next
        exc = exc.__context__
        if exc is None:
            break
    return False


def _mark_coroutine_function(func: Callable[..., Any]) -> None:
    """Make `asyncio.iscoroutinefunction` and `inspect.iscoroutinefunction` true for *func*."""
    marker = getattr(asyncio.coroutines, "_is_coroutine", None)  # asyncio's, until 3.15
    if marker is not None:
        func._is_coroutine = marker  # type: ignore[attr-defined]
    mark = getattr(inspect, "markcoroutinefunction", None)  # 3.12+
    if mark is not None:
        mark(func)


@final
class TraceMiddleware:
    """Record what crosses the ASGI boundary of every traced request.

    A pure ASGI middleware (never ``BaseHTTPMiddleware``): it wraps ``receive`` and
    ``send`` per request, binds the request's recorder to a context variable for the
    other probes, and records the request's end. Lifespan and unknown scope types,
    excluded paths and unsampled requests pass straight through.

    Use it as ``app.add_middleware(TraceMiddleware, tracer=tracer)`` or through
    `instrument`.

    Args:
        app: The ASGI app to trace.
        tracer: Where traces go; a new `Tracer` built from *options* when omitted.
        options: `Tracer` keyword arguments, only when *tracer* is omitted.

    Raises:
        TypeError: both *tracer* and *options* were given.

    .. versionadded:: 0.1
    """

    __slots__ = ("app", "tracer")

    # The overloads let `app.add_middleware(TraceMiddleware, tracer=tracer)` type-check:
    # Starlette infers a ParamSpec from those keywords, which `**options` alone defeats.
    @overload
    def __init__(self, app: ASGIApp, *, tracer: Tracer) -> None: ...
    @overload
    def __init__(self, app: ASGIApp, *, tracer: None = None, **options: Any) -> None: ...
    def __init__(self, app: ASGIApp, *, tracer: Tracer | None = None, **options: Any) -> None:
        if tracer is not None and options:
            raise TypeError(
                "pass Tracer options either to Tracer(...) or to TraceMiddleware(...), "
                f"not both (got tracer= and {', '.join(sorted(options))})"
            )
        self.app = app
        self.tracer = tracer if tracer is not None else Tracer(**options)
        _entry.watch(_entry.endpoints_of(app))

    def __getattr__(self, name: str) -> Any:
        # `instrument(app)` should stay a drop-in for `app`: forward attribute reads
        # (`app.state`, `app.routes`, ...) to the wrapped app.
        if name.startswith("__") or name in TraceMiddleware.__slots__:
            raise AttributeError(name)
        return getattr(self.app, name)

    def __repr__(self) -> str:
        return f"TraceMiddleware({self.app!r}, tracer={self.tracer!r})"

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function returning the awaitable, marked as a coroutine function below:
        # a request that is not traced (unsampled, excluded, lifespan) gets the app's own
        # coroutine back, with no coroutine of asgitrace's around it. The trace opens
        # inside the awaitable, in the task that runs the request.
        try:
            wanted = self.tracer.wants(scope)
        except Exception as exc:
            log_failure("opening a trace", exc)
            wanted = False
        if not wanted:
            return self.app(scope, receive, send)
        return self._traced(scope, receive, send)

    # ASGI servers and frameworks tell an ASGI 3 app by `iscoroutinefunction(app.__call__)`
    # (uvicorn, Starlette): asyncio's marker (3.10-3.13) and inspect's (3.12+) say so.
    _mark_coroutine_function(__call__)

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            rec = self.tracer.recorder(scope, asyncio.current_task())
            rec.add(
                _RECEIVED, open_fields(rec.type, rec.path, rec.method, scope.get("http_version"))
            )
        except Exception as exc:
            log_failure("opening a trace", exc)
            return await self.app(scope, receive, send)

        async def traced_receive() -> Message:
            message = await receive()
            try:
                if message["type"] in _DISCONNECTS:
                    rec.add(EventKind.DISCONNECTED, message_fields(message))
                else:
                    rec.add(_RECEIVED, message_fields(message))
            except Exception as exc:
                log_failure("recording a received message", exc)
            return message

        def traced_send(message: Message) -> Awaitable[None]:
            # Not a coroutine of its own: it records and returns the server's awaitable,
            # so a message sent costs no extra coroutine (and no extra await link).
            try:
                _record_sent(rec, message)
            except Exception as exc:
                log_failure("recording a sent message", exc)
            return send(message)

        token = CURRENT.set(rec)
        try:
            await self._driven(self.app(scope, traced_receive, traced_send), rec)
        except asyncio.CancelledError:
            _finish(rec, "cancelled", end_fields(rec.status))
            raise
        except BaseException as exc:
            _finish(rec, "failed", end_fields(rec.status, type(exc).__name__))
            raise
        else:
            _finish(rec, "completed", end_fields(rec.status))
        finally:
            CURRENT.reset(token)
            if rec.mon is not None:
                rec.mon.request_ended()
            if _entry.AVAILABLE:  # 3.12+: nothing to do before
                _entry.watch_endpoint(scope)

    @staticmethod
    def _driven(awaitable: Awaitable[None], rec: Recorder) -> Awaitable[None]:
        """Wrap the app's coroutine in a `Stepper`, so every suspension is recorded."""
        if type(awaitable) is not CoroutineType and not asyncio.iscoroutine(awaitable):
            return awaitable
        try:
            loop = asyncio.get_running_loop()
            mon = monitor_of(loop)
            if mon is None or mon.threshold_ns > rec.blocking_ns:
                mon = install(loop, rec.blocking_ns)
        except Exception as exc:
            log_failure("task hook", exc)
            mon = None
        if mon is not None:
            rec.mon = mon
            mon.request_started()
            # The server's task for this request may have been wrapped by the task hook
            # (another traced request was in flight when it was created): the request's
            # own stepper times its steps from now on, so that one stands aside.
            task = rec.task_obj
            outer = task.get_coro() if task is not None else None
            if type(outer) is Stepper and outer.rec is None:
                outer.mon = None
        return Stepper(awaitable, mon, rec, rec.task, request_task=True)


def _finish(rec: Recorder, kind: str, fields: tuple[Any, ...]) -> None:
    try:
        rec.close(kind, fields)
    except Exception as exc:
        log_failure("finishing a trace", exc)


def instrument(app: ASGIApp, tracer: Tracer | None = None, **options: Any) -> TraceMiddleware:
    """Wrap any ASGI app so that its requests are traced; return the wrapped app.

    The result forwards attribute reads to *app*, so ``app = instrument(app)`` keeps
    ``app.state`` and friends working.

    Args:
        app: The ASGI app.
        tracer: The tracer to record into; a new one from *options* when omitted.
        options: `Tracer` keyword arguments, only when *tracer* is omitted.

    .. versionadded:: 0.1
    """
    return TraceMiddleware(app, tracer=tracer, **options)
