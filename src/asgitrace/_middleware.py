"""`TraceMiddleware`: the pure-ASGI probe that opens one trace per request."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, final, overload

from . import _entry
from ._context import CURRENT
from ._events import EventKind
from ._log import log_failure
from ._stepper import Stepper, _entered_fields
from ._taskhook import install, monitor_of
from ._trace import ends_response
from ._tracer import Tracer

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ._trace import Recorder
    from ._types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["TraceMiddleware", "instrument"]

_RECEIVED = EventKind.RECEIVED
_SENT = EventKind.SENT
_DISCONNECTS = frozenset({"http.disconnect", "websocket.disconnect"})


def _message_fields(message: Message) -> dict[str, Any]:
    """The sizes and flags of an ASGI message; never its body."""
    fields: dict[str, Any] = {"type": message["type"]}
    if "body" in message:
        fields["body_bytes"] = len(message["body"])
        fields["more_body"] = bool(message.get("more_body", False))
    elif message.get("bytes") is not None:
        fields["body_bytes"] = len(message["bytes"])
    elif message.get("text") is not None:
        fields["text_chars"] = len(message["text"])
    return fields


def _record_sent(rec: Recorder, message: Message) -> None:
    fields = _message_fields(message)
    kind = fields["type"]
    if not rec.entered:
        _derive_entered(rec)
    if kind in ("http.response.start", "websocket.http.response.start"):
        rec.status = fields["status"] = int(message["status"])
        headers = message.get("headers")
        if headers:
            rec.response_headers = redacted = rec.redactor.raw_headers_of(headers)
            for name, value in redacted:
                if name == b"content-type" or name.lower() == b"content-type":
                    fields["content_type"] = value.decode("latin-1")
                    break
    elif kind == "websocket.accept":
        rec.status = fields["status"] = 101
    elif kind == "websocket.close":
        fields["code"] = message.get("code", 1000)
    if ends_response(fields):
        rec.response_done = True
    rec.add(_SENT, fields)


def _derive_entered(rec: Recorder) -> None:
    """Before the first message out: the endpoint (if routed) has run by now."""
    code = getattr(rec.scope.get("endpoint"), "__code__", None)
    if code is not None:
        rec.entered = True
        rec.add(EventKind.ENTERED, _entered_fields(code, derived=True))


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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            rec = self._open(scope)
        except Exception as exc:
            log_failure("opening a trace", exc)
            rec = None
        if rec is None:
            return await self.app(scope, receive, send)

        async def traced_receive() -> Message:
            message = await receive()
            try:
                if message["type"] in _DISCONNECTS:
                    rec.add(EventKind.DISCONNECTED, _message_fields(message))
                else:
                    rec.add(_RECEIVED, _message_fields(message))
            except Exception as exc:
                log_failure("recording a received message", exc)
            return message

        async def traced_send(message: Message) -> None:
            try:
                _record_sent(rec, message)
            except Exception as exc:
                log_failure("recording a sent message", exc)
            await send(message)

        token = CURRENT.set(rec)
        try:
            await self._driven(self.app(scope, traced_receive, traced_send), rec)
        except asyncio.CancelledError:
            _finish(rec, EventKind.CANCELLED, {"status": rec.status})
            raise
        except BaseException as exc:
            _finish(rec, EventKind.FAILED, {"exception": type(exc).__name__, "status": rec.status})
            raise
        else:
            _finish(rec, EventKind.COMPLETED, {"status": rec.status})
        finally:
            CURRENT.reset(token)
            if rec.mon is not None:
                rec.mon.active -= 1
            _entry.watch_endpoint(scope)

    @staticmethod
    def _driven(awaitable: Awaitable[None], rec: Recorder) -> Awaitable[None]:
        """Wrap the app's coroutine in a `Stepper`, so every suspension is recorded."""
        if not asyncio.iscoroutine(awaitable):
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
            mon.active += 1
        return Stepper(awaitable, mon, rec, rec.task, request_task=True)

    def _open(self, scope: Scope) -> Recorder | None:
        tracer = self.tracer
        if not tracer.wants(scope):
            return None
        rec = tracer.recorder(scope, asyncio.current_task())
        fields: dict[str, Any] = {"type": scope["type"], "path": rec.path}
        if rec.method is not None:
            fields["method"] = rec.method
        if "http_version" in scope:
            fields["http_version"] = scope["http_version"]
        rec.add(_RECEIVED, fields)
        return rec


def _finish(rec: Recorder, kind: EventKind, fields: dict[str, Any]) -> None:
    try:
        rec.finish(kind, fields)
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
