"""Send the requests that ``asgitrace trace`` traces: through uvicorn or in-process.

Part of the CLI layer (a leaf: nothing in the package imports it). Nothing here prints;
progress is reported through a callback that ``cli`` turns into a progress bar.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ._app import CliError, run_lifespan, with_state

if TYPE_CHECKING:
    import httpx

    from .._support import ASGIApp

__all__ = ["RequestSpec", "RunResult", "plan_requests", "send_requests"]

Server = Literal["uvicorn", "inprocess"]


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request to send."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None


@dataclass(frozen=True, slots=True)
class RunResult:
    """What the client saw: how long the requests took in all (the server's start not
    included), and the requests that got no answer."""

    elapsed: float
    errors: tuple[str, ...]


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise CliError(f"-H expects 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _body(data: str) -> bytes:
    if not data.startswith("@"):
        return data.encode()
    try:
        with open(data[1:], "rb") as file:
            return file.read()
    except OSError as exc:
        raise CliError(f"cannot read the body from {data[1:]!r}: {exc.strerror or exc}") from exc


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def plan_requests(
    paths: Sequence[str],
    *,
    method: str | None = None,
    data: str | None = None,
    headers: Sequence[str] = (),
    requests: int | None = None,
) -> list[RequestSpec]:
    """The requests to send: *requests* in all (one per path by default), cycling the paths.

    The method is GET, or POST when there is a body. ``data`` starting with ``@`` names a
    file to send. Without a ``Content-Type`` header a body is sent as ``application/json``
    when it parses as JSON, else as ``application/x-www-form-urlencoded`` (as curl does).

    Raises:
        CliError: a path does not start with ``/``, a header is malformed, the body file
            cannot be read, or *requests* is below 1.
    """
    for path in paths:
        if not path.startswith("/"):
            raise CliError(f"paths start with '/', like /items/1; got {path!r}")
    if requests is not None and requests < 1:
        raise CliError("--requests must be at least 1")
    pairs = [_header(h) for h in headers]
    body = _body(data) if data is not None else None
    if body is not None and not any(name.lower() == "content-type" for name, _ in pairs):
        kind = "application/json" if _is_json(body) else "application/x-www-form-urlencoded"
        pairs.append(("Content-Type", kind))
    verb = (method or ("POST" if body is not None else "GET")).upper()
    count = requests if requests is not None else len(paths)
    return [RequestSpec(verb, paths[i % len(paths)], tuple(pairs), body) for i in range(count)]


async def _drive(
    client: httpx.AsyncClient,
    plan: Sequence[RequestSpec],
    concurrency: int,
    on_response: Callable[[], object],
) -> RunResult:
    import httpx

    errors: list[str] = []
    pending = iter(plan)

    async def worker() -> None:
        for spec in pending:  # shared by the workers: each request is sent once
            try:
                response = await client.request(
                    spec.method, spec.path, headers=list(spec.headers), content=spec.body
                )
                await response.aclose()
            except httpx.HTTPError as exc:
                errors.append(f"{spec.method} {spec.path}: {type(exc).__name__}: {exc}")
            on_response()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(plan)))))
    return RunResult(time.perf_counter() - start, tuple(errors))


class _OwnRequests(logging.Filter):
    """Drops httpx's ``HTTP Request: GET http://127.0.0.1:…`` records of asgitrace's own
    client, so that an app that configures logging (``basicConfig(INFO)``) does not get
    one line per traced request; the app's own httpx calls still log."""

    def __init__(self) -> None:
        super().__init__()
        self.bases: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        url = str(args[1]) if len(args) > 1 else ""
        return not any(url.startswith(base) for base in self.bases)


@contextlib.contextmanager
def _quiet_client(base: str) -> Iterator[None]:
    logger = logging.getLogger("httpx")
    own = _OwnRequests()
    own.bases.append(base.rstrip("/") + "/")
    logger.addFilter(own)
    try:
        yield
    finally:
        logger.removeFilter(own)


async def send_requests(
    app: ASGIApp,
    plan: Sequence[RequestSpec],
    *,
    server: Server = "uvicorn",
    concurrency: int = 1,
    timeout: float = 30.0,
    on_response: Callable[[], object] = lambda: None,
) -> RunResult:
    """Send *plan* to *app*, *concurrency* (1 or more) requests at a time; call *on_response*
    after each.

    ``uvicorn`` serves the app on 127.0.0.1 with a free port (lifespan included) and sends
    real HTTP; ``inprocess`` calls the app through ``httpx.ASGITransport`` after running
    its lifespan. Every traced request has finished when this returns.

    Raises:
        CliError: the server did not start, or the app's lifespan startup failed.
    """
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise CliError("asgitrace trace needs httpx: pip install 'asgitrace[demo]'") from exc
    limits = httpx.Limits(max_connections=max(concurrency, 10))
    if server == "uvicorn":
        from ._server import StartupError, running_server

        try:
            async with running_server(app, lifespan="auto") as url:
                with _quiet_client(url):
                    async with httpx.AsyncClient(
                        base_url=url, timeout=timeout, limits=limits
                    ) as client:
                        result = await _drive(client, plan, concurrency, on_response)
        except StartupError as exc:
            raise CliError(str(exc)) from exc
        except OSError as exc:
            raise CliError(f"the uvicorn server did not start: {exc}") from exc
    else:
        async with run_lifespan(app, timeout=timeout) as state:
            transport = httpx.ASGITransport(app=with_state(app, state), raise_app_exceptions=False)
            with _quiet_client("http://testserver"):
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://testserver", timeout=timeout
                ) as client:
                    result = await _drive(client, plan, concurrency, on_response)
    return result
