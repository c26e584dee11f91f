"""Run an ASGI app in a real uvicorn server on 127.0.0.1 with an ephemeral port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

    from .._support import ASGIApp, Message, Receive, Scope, Send

__all__ = ["StartupError", "running_server"]


class StartupError(RuntimeError):
    """The app itself failed to start (its lifespan startup raised)."""


async def _serve(server: uvicorn.Server, where: str, failures: list[str]) -> None:
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits the process when it cannot start
        if getattr(getattr(server, "lifespan", None), "startup_failed", False):
            lines = [line for f in failures for line in f.strip().splitlines()]
            raised = f": {lines[-1].strip()}" if lines else ""
            raise StartupError(
                f"the app failed to start: its lifespan startup raised{raised}"
            ) from None
        raise OSError(f"could not start a server on {where} (is the port in use?)") from None


def _startup_failures(app: ASGIApp, failures: list[str]) -> ASGIApp:
    """*app*, noting the message of a ``lifespan.startup.failed`` it sends (Starlette
    puts the traceback there), so that the error can name the exception. Other scopes
    get the app's own awaitable: nothing of ours around a request."""

    def watched(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "lifespan":
            return app(scope, receive, send)

        async def noting(message: Message) -> None:
            if message.get("type") == "lifespan.startup.failed":
                failures.append(str(message.get("message") or ""))
            await send(message)

        return app(scope, receive, noting)

    return watched


async def _started(server: uvicorn.Server, task: asyncio.Task[None], where: str) -> None:
    while not server.started:
        if task.done():
            task.result()  # raises the OSError from _serve
            raise OSError(f"the server on {where} stopped before it started")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running_server(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 10.0,
    **config: Any,
) -> AsyncIterator[str]:
    """Serve *app* with uvicorn inside the running loop; yield its base URL.

    The server binds *host* (loopback by default) on *port* (0: any free port) and is
    shut down when the block exits.

    Raises:
        OSError: the port could not be bound.
        StartupError: the app's lifespan startup failed.
        TimeoutError: the server did not start within *startup_timeout* seconds.
    """
    import uvicorn

    config.setdefault("log_level", "warning")
    config.setdefault("lifespan", "off")
    failures: list[str] = []
    served = app
    if config["lifespan"] != "off":
        served = _startup_failures(app, failures)
        config.setdefault("interface", "asgi3")  # the wrapper is a plain function
    server = uvicorn.Server(uvicorn.Config(served, host=host, port=port, **config))
    where = f"{host}:{port}"
    task = asyncio.create_task(_serve(server, where, failures))
    try:
        await asyncio.wait_for(_started(server, task, where), startup_timeout)
        bound_port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(OSError):
            await task
