"""The command line's view of the user's app: find it, check it, run its lifespan.

Part of the CLI layer (a leaf: nothing in the package imports it). Nothing here prints
or exits; problems the user can act on are raised as `CliError`, which ``cli.main``
prints as one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import sys
from collections.abc import AsyncIterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..capture import TraceMiddleware, Tracer

if TYPE_CHECKING:
    from .._support import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CliError",
    "find_tracer",
    "load_app",
    "run_lifespan",
    "websocket_paths",
    "with_state",
]


class CliError(Exception):
    """An error the user can act on: printed as one line, exit status 2."""


def _import(module_name: str, app_dir: str) -> ModuleType:
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise CliError(
                f"cannot import {module_name!r}: there is no module {missing!r} in {app_dir} "
                "or on sys.path (run from your project's folder, or pass --app-dir)"
            ) from exc
        raise CliError(
            f"importing {module_name!r} failed: ModuleNotFoundError: {exc} "
            "(is the app's environment active?)"
        ) from exc
    except Exception as exc:
        raise CliError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)"
        ) from exc


def _looks_like_app(obj: object) -> bool:
    return (
        callable(obj)
        and not isinstance(obj, type | ModuleType)
        and inspect.iscoroutinefunction(obj.__call__)
    )


def _candidates(module: ModuleType) -> list[str]:
    names = [n for n, v in vars(module).items() if not n.startswith("_") and _looks_like_app(v)]
    return sorted(names)[:5]


def _not_asgi_reason(obj: object) -> str | None:
    """Why *obj* cannot be an ASGI 3 app, or ``None`` when it can."""
    if isinstance(obj, ModuleType):
        return "is a module"
    if isinstance(obj, type):
        return f"is the class {obj.__name__}, not an instance of it (or pass --factory)"
    if not callable(obj):
        return f"is a {type(obj).__name__}, not callable"
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins and C callables: give them the benefit
        return None
    try:
        signature.bind(None, None, None)
    except TypeError:
        factory = ""
        with contextlib.suppress(TypeError):
            signature.bind()
            factory = " (if it returns the app, pass --factory)"
        return (
            f"is a {type(obj).__name__} that cannot be called as app(scope, receive, send)"
            + factory
        )
    return None


def load_app(spec: str, *, app_dir: str = ".", factory: bool = False) -> ASGIApp:
    """Import ``MODULE:ATTRIBUTE`` (the attribute may be dotted) and check it is an app.

    Args:
        spec: ``myapp:app``, ``package.main:app``, ``main:api.app``.
        app_dir: Folder put first on ``sys.path`` (the current one by default).
        factory: The attribute is a function returning the app: call it.

    Raises:
        CliError: the spec is malformed, the module or attribute does not exist, importing
            it raised, or the result is not an ASGI app.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"expected MODULE:APP, such as myapp:app or package.main:app; got {spec!r}")
    module = _import(module_name, os.path.abspath(app_dir))
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            found = _candidates(module)
            hint = f" (apps found there: {', '.join(found)})" if found else ""
            raise CliError(f"module {module_name!r} has no attribute {attr!r}{hint}") from None
    if factory:
        if not callable(obj):
            raise CliError(f"{spec} is a {type(obj).__name__}, not a factory to call")
        try:
            obj = obj()
        except Exception as exc:
            raise CliError(
                f"calling the factory {spec}() failed: {type(exc).__name__}: {exc}"
            ) from exc
    reason = _not_asgi_reason(obj)
    if reason is not None:
        raise CliError(f"{spec} is not an ASGI app: it {reason}")
    app: ASGIApp = obj
    return app


def websocket_paths(app: object, paths: Sequence[str]) -> list[str]:
    """Those of *paths* that a websocket route of *app* (Starlette, FastAPI) serves.

    The app is looked for through the ``.app`` of the middleware around it.
    """
    routes: Sequence[Any] = ()
    for _ in range(20):
        found = getattr(app, "routes", None)
        if isinstance(found, Sequence):
            routes = found
            break
        app = getattr(app, "app", None)
        if app is None:
            return []
    sockets = [r for r in routes if "websocket" in type(r).__name__.lower()]
    out: list[str] = []
    for path in paths:
        bare = path.split("?", 1)[0]
        for route in sockets:
            regex = getattr(route, "path_regex", None)
            if regex is not None and regex.match(bare):
                out.append(bare)
                break
    return out


def find_tracer(app: object) -> Tracer | None:
    """The `Tracer` of a `TraceMiddleware` the app already has, if the CLI can see it.

    That is ``instrument(app, tracer)`` (the app is the middleware) or
    ``app.add_middleware(TraceMiddleware, tracer=tracer)`` (Starlette's list of user
    middleware). Tracing such an app again from outside would split each request's
    events between two traces: the command line uses the app's own tracer instead.
    """
    if isinstance(app, TraceMiddleware):
        return app.tracer
    for middleware in getattr(app, "user_middleware", None) or ():
        tracer = getattr(middleware, "kwargs", {}).get("tracer")
        if getattr(middleware, "cls", None) is TraceMiddleware and isinstance(tracer, Tracer):
            return tracer
    return None


async def _next_message(outbox: asyncio.Queue[Message], task: asyncio.Task[None]) -> Message | None:
    """The app's next lifespan message, or ``None`` when its lifespan task ended first."""
    getter = asyncio.ensure_future(outbox.get())
    try:
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # timed out or cancelled: leave no pending get behind
        getter.cancel()
        raise
    if getter.done():
        return getter.result()
    getter.cancel()
    return None


@contextlib.asynccontextmanager
async def run_lifespan(app: ASGIApp, *, timeout: float = 30.0) -> AsyncIterator[dict[str, Any]]:
    """Run *app*'s lifespan around the block (as uvicorn's ``lifespan="auto"`` does).

    Yields the lifespan state, which `with_state` hands to each request. An app that
    does not speak the lifespan protocol (it raises or returns at once) is run without.

    Raises:
        CliError: the app reported that its startup failed, or did not finish it in time.
    """
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
    scope["state"] = state

    async def receive() -> Message:
        return await inbox.get()

    async def send(message: Message) -> None:
        await outbox.put(message)

    async def lifespan() -> None:
        with contextlib.suppress(Exception):  # "lifespan unsupported", as in uvicorn's auto
            await app(scope, receive, send)

    task = asyncio.create_task(lifespan())
    try:
        await inbox.put({"type": "lifespan.startup"})
        try:
            started = await asyncio.wait_for(_next_message(outbox, task), timeout)
        except asyncio.TimeoutError:
            raise CliError(f"the app's lifespan startup did not finish in {timeout:g} s") from None
        if started is not None and started["type"] == "lifespan.startup.failed":
            # Starlette sends the whole traceback: its last line names the exception.
            lines = str(started.get("message") or "").strip().splitlines()
            raise CliError(f"the app's lifespan startup failed: {lines[-1] if lines else '?'}")
        yield state
        if started is not None:
            await inbox.put({"type": "lifespan.shutdown"})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_next_message(outbox, task), timeout)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def with_state(app: ASGIApp, state: dict[str, Any]) -> ASGIApp:
    """Give each request a shallow copy of the lifespan *state*, as servers do."""
    if not state:
        return app

    async def stateful(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    return stateful
