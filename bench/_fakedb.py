"""A tiny "database" server for the ``real`` endpoint, in a process of its own.

Run by ``bench/run.py`` (see `running_db`), never by hand::

    python bench/_fakedb.py

It binds 127.0.0.1 port 0, prints ``PORT <n>`` on stdout and answers, on every connection,
one line per request line: ``<table> <id>\\n`` in, one JSON row out (`row`, a small
computation so that each answer costs the server a little CPU, as a real query would). It
exits when its stdin closes (the parent stopped or died), so no orphan is left behind.

Its own process, so that the benchmarked server's CPU time counts only the client side of
the queries: real socket round trips, as a real app's database driver makes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from _procs import read_line, spawn, stop

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0


def row(table: str, key: int) -> dict[str, Any]:
    """The row *table* holds under *key*: deterministic, so the endpoint's body is known."""
    score = sum(i * i for i in range(key % 50 + 50)) % 9973
    return {"id": key, "name": f"{table}-{key}", "score": score}


def answer(line: bytes) -> bytes:
    """One JSON line for one request line (``<table> <id>``), or an ``error`` row."""
    try:
        table, key = line.decode().split()
        return json.dumps(row(table, int(key)), separators=(",", ":")).encode() + b"\n"
    except ValueError:
        return b'{"error":"expected: <table> <id>"}\n'


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while line := await reader.readline():
            writer.write(answer(line))
    writer.close()


def _exit_when_stdin_closes(loop: asyncio.AbstractEventLoop, done: asyncio.Event) -> None:
    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


async def _main() -> None:
    server = await asyncio.start_server(_session, HOST, 0)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    done = asyncio.Event()
    _exit_when_stdin_closes(asyncio.get_running_loop(), done)
    async with server:
        await done.wait()


@contextlib.contextmanager
def running_db() -> Iterator[int]:
    """Start the fake database process; yield its port; always stop it (see `_procs.stop`)."""
    child = spawn("the fake database", [sys.executable, __file__])
    try:
        line = read_line(child, time.monotonic() + STARTUP_TIMEOUT)
        if not line.startswith("PORT "):
            raise RuntimeError(f"the fake database said {line!r} instead of its port")
        yield int(line.split()[1])
    finally:
        stop(child)


if __name__ == "__main__":
    asyncio.run(_main())
