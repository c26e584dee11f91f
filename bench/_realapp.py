"""The ``real`` endpoint: what a real FastAPI request does, with no external service.

``GET /real/report`` is served by a FastAPI sub-app (mounted on the benchmark app, so that
its middleware stays off the other endpoints) with:

- Starlette's `BaseHTTPMiddleware` (a ``dispatch`` adding a response header): its own
  task, memory streams and extra suspensions per request, as many real apps have;
- a dependency with ``yield`` that opens a "session" (a connection taken from the pool)
  and closes it (gives it back) when the request is done;
- `QUERIES` round trips to the fake database (`_fakedb`, another process) on real
  loopback sockets, over a pool of asyncio streams opened lazily: 16 one after another on
  the session's connection, then an `asyncio.gather` of two children doing 2 each on
  connections of their own;
- a pydantic response model (rows validated from the database's JSON, then the response
  validated and serialized by FastAPI).

No ``from __future__ import annotations`` here: FastAPI reads the endpoint's annotations
at run time, and ``Depends(session)`` names a local function.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from _fakedb import HOST, row
from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel
from starlette.middleware.base import BaseHTTPMiddleware

PATH = "/real/report"
SEQUENTIAL = 16
"""Queries the endpoint makes one after another on its session's connection."""
PER_CHILD = 2
"""Queries each of the two gathered children makes."""
QUERIES = SEQUENTIAL + 2 * PER_CHILD

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Row(BaseModel):
    """One row of the fake database."""

    id: int
    name: str
    score: int


class Report(BaseModel):
    """The response model: what the endpoint read, and a total computed from it."""

    user: Row
    orders: list[Row]
    related: list[Row]
    total: int


class Pool:
    """Connections to the fake database, opened when none is idle, reused afterwards.

    Bound to the loop that opened them: the in-process benchmark runs each measurement in
    a fresh loop, and a stream belongs to the loop it was opened on, so a new loop starts
    an empty pool (the old connections are aborted).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._idle: list[Streams] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self) -> Streams:
        """An idle connection, or a new one."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._forget()
            self._loop = loop
        if self._idle:
            return self._idle.pop()
        return await asyncio.open_connection(HOST, self.port)

    def release(self, streams: Streams) -> None:
        """Give *streams* back for the next request."""
        self._idle.append(streams)

    def _forget(self) -> None:
        for _, writer in self._idle:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                writer.transport.abort()
        self._idle.clear()


async def query(streams: Streams, table: str, key: int) -> Row:
    """One round trip: a request line out, one JSON row back (one suspension at least)."""
    reader, writer = streams
    writer.write(f"{table} {key}\n".encode())
    return Row.model_validate_json(await reader.readline())


def build_real_app(port: int) -> FastAPI:
    """The sub-app serving ``/report``, talking to the fake database on *port*."""
    pool = Pool(port)
    app = FastAPI()

    async def stamp(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["x-bench"] = "real"
        return response

    app.add_middleware(BaseHTTPMiddleware, dispatch=stamp)

    async def session() -> AsyncIterator[Streams]:
        streams = await pool.acquire()
        try:
            yield streams
        finally:
            pool.release(streams)

    async def child(table: str, first: int) -> list[Row]:
        streams = await pool.acquire()
        try:
            return [await query(streams, table, first + n) for n in range(PER_CHILD)]
        finally:
            pool.release(streams)

    @app.get("/report", response_model=Report)
    async def report(db: Annotated[Streams, Depends(session)]) -> Report:
        user = await query(db, "users", 7)
        orders = [await query(db, "orders", 100 + n) for n in range(SEQUENTIAL - 1)]
        left, right = await asyncio.gather(child("items", 200), child("items", 300))
        total = sum(r.score for r in orders)
        return Report(user=user, orders=orders, related=left + right, total=total)

    return app


def expected_body() -> bytes:
    """The exact body ``GET /real/report`` answers (the rows are deterministic)."""
    orders = [Row(**row("orders", 100 + n)) for n in range(SEQUENTIAL - 1)]
    related = [Row(**row("items", first + n)) for first in (200, 300) for n in range(PER_CHILD)]
    report = Report(
        user=Row(**row("users", 7)),
        orders=orders,
        related=related,
        total=sum(r.score for r in orders),
    )
    return json.dumps(report.model_dump(mode="json"), separators=(",", ":")).encode()
