"""The soak server's side: what is alive in the process, and tracemalloc snapshots.

`_serve.py --soak` answers `STATS_PATH` with `Stats`, *outside* the traced app (the query is
not traced itself, so it adds no trace, recorder or wrapped task to what it counts)::

    GET /bench-soak-stats                   live objects, the tracer's ring
    GET /bench-soak-stats?snapshot=warmup   ... and a tracemalloc snapshot, dumped to a file
    GET /bench-soak-stats?snapshot=end      ... the same, at the end

Snapshots go to files (``_serve.py --tracemalloc DIR``) rather than staying in the server,
where the baseline would weigh on the resident size being measured; `soak.py` (the client
side) compares them and prints the answers.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from _apps import ASGIApp, Receive, Scope, Send

from asgitrace import Tracer

STATS_PATH = "/bench-soak-stats"
SNAPSHOTS = ("warmup", "end")


PER_REQUEST = ("Recorder", "Stepper")
"""asgitrace's per-request objects: whatever still holds one when idle is named."""
MAX_EXAMINED = 50


def live_objects() -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """After a full collection: live objects of asgitrace's types (by class name) and tasks,
    and what holds the per-request ones (`PER_REQUEST`), by the referrers' type names.

    Counts what the garbage collector tracks: instances of asgitrace's classes (all of them
    hold references, so the collector tracks them) and asyncio tasks.
    """
    gc.collect()
    counts: Counter[str] = Counter()
    examined: list[object] = []
    for obj in gc.get_objects():
        cls = type(obj)
        module = cls.__module__  # not always a string: some C types have a descriptor
        if isinstance(module, str) and module.startswith("asgitrace"):
            name = cls.__qualname__
            counts[name] += 1
            if name in PER_REQUEST and len(examined) < MAX_EXAMINED:
                examined.append(obj)
        elif isinstance(obj, asyncio.Task):
            counts["asyncio.Task"] += 1
    held_by: dict[str, Counter[str]] = {}
    for obj in examined:
        holders = held_by.setdefault(type(obj).__qualname__, Counter())
        for referrer in gc.get_referrers(obj):
            if referrer is not examined:
                holders[type(referrer).__qualname__] += 1
    examined.clear()
    return dict(counts.most_common()), {k: dict(v.most_common()) for k, v in held_by.items()}


class Stats:
    """The answers of `STATS_PATH`."""

    def __init__(self, tracer: Tracer, snapshot_dir: Path | None) -> None:
        self.tracer = tracer
        self.snapshot_dir = snapshot_dir

    def __call__(self, snapshot: str) -> dict[str, Any]:
        """Live objects, the ring, and with *snapshot* (see `SNAPSHOTS`) a tracemalloc dump."""
        live, held_by = live_objects()
        answer: dict[str, Any] = {
            "live": live,
            "held_by": held_by,
            "traces_in_ring": len(self.tracer.traces),
            "max_traces": self.tracer.max_traces,
            "tracemalloc": tracemalloc.is_tracing(),
        }
        if snapshot not in SNAPSHOTS or self.snapshot_dir is None or not tracemalloc.is_tracing():
            return answer
        current, peak = tracemalloc.get_traced_memory()
        answer["traced_mb"] = current / 1e6
        answer["traced_peak_mb"] = peak / 1e6
        path = self.snapshot_dir / f"{snapshot}.tracemalloc"
        tracemalloc.take_snapshot().dump(str(path))
        answer["snapshot_file"] = str(path)
        return answer


def with_stats_route(app: ASGIApp, stats: Callable[[str], dict[str, Any]]) -> ASGIApp:
    """*app*, with `STATS_PATH` answered by *stats* before the request reaches *app*."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != STATS_PATH:
            await app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode())
        body = json.dumps(stats(query.get("snapshot", [""])[0])).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return dispatch
