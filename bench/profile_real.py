"""Where a traced request's time goes: the ``real`` endpoint in-process, under cProfile.

    python bench/profile_real.py [--requests 2000] [--concurrency 16] [--endpoint real]
                                 [--variant traced] [--top 25] [--stats FILE]

Starts the fake database (`_fakedb`, a process of its own, stopped on exit), builds the
benchmark app as ``--variant`` says, warms it up, then profiles a fixed number of requests
sent in-process (the ASGI app called directly), *concurrency* of them in flight at once, so
that the loop also runs other requests' work while one waits, as a loaded server does.

Prints the top functions by own time (with their share of the profiled time), the share
of each asgitrace module (own time) and, from the traces kept, per request: events by
kind, tasks, the ``other_work`` entries, and (in a separate, unprofiled pass that wraps
the capture layer's ``walk``) how many chain walks a request makes and how deep they go.
Nothing in asgitrace is changed: the walk is counted through a wrapper installed here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import marshal
import pstats
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _apps import ENDPOINTS, build_app, instrument
from _fakedb import running_db
from _inprocess import _discard, check_request, get_scope, make_receive
from _procs import run_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--endpoint", choices=tuple(ENDPOINTS), default="real")
    parser.add_argument("--variant", default="traced")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--stats", type=Path, help="also dump the pstats here")
    return parser.parse_args(argv)


async def drive(app: Any, path: str, count: int, concurrency: int) -> None:
    """Serve *count* requests, *concurrency* at a time, each in its own task."""
    left = count
    template = get_scope(path)
    loop = asyncio.get_running_loop()

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await loop.create_task(app(dict(template), make_receive(), _discard))

    await asyncio.gather(*(client() for _ in range(concurrency)))


def _module_of(filename: str) -> str:
    """``capture/_stepper.py`` for asgitrace's files, else a coarse owner of the file."""
    marker = "/asgitrace/"
    if filename == "~":
        return "builtins (C)"
    if marker in filename:
        return filename.rsplit(marker, 1)[1]
    for owner in ("starlette", "fastapi", "pydantic", "anyio", "asyncio", "json", "bench"):
        if f"/{owner}/" in filename:
            return owner
    return "other"


def report_profile(stats: pstats.Stats, top: int, requests: int) -> None:
    """The top functions by own time, then own time by module (asgitrace's by file)."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    print(f"profiled own time: {total:.3f} s, {total * 1e6 / requests:.0f} us per request")
    print(f"\ntop {top} functions by own time:")
    print(f"{'share':>6} {'us/req':>7} {'calls/req':>9}  function")
    ranked = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)
    for (filename, line, name), (_, calls, own, _, _) in ranked[:top]:
        where = f"{_module_of(filename)}:{line}" if line else filename
        print(
            f"{own / total:6.1%} {own * 1e6 / requests:7.1f} {calls / requests:9.1f}  "
            f"{name} ({where})"
        )
    by_module: Counter[str] = Counter()
    for (filename, _, _), (_, _, own, _, _) in raw.items():
        by_module[_module_of(filename)] += own
    print("\nown time by module (asgitrace by file):")
    for module, own in by_module.most_common(20):
        print(f"{own / total:6.1%} {own * 1e6 / requests:7.1f} us/req  {module}")


def report_traces(records: list[Any]) -> None:
    """Per request: events by kind, tasks, other_work entries (from the stored records)."""
    kinds: Counter[str] = Counter()
    events: list[int] = []
    tasks: list[int] = []
    work: list[int] = []
    others: list[int] = []
    for stored in records:
        record = marshal.loads(stored) if isinstance(stored, bytes) else stored
        trace_events, other = record[13], record[14]
        events.append(len(trace_events))
        tasks.append(len({event[3] for event in trace_events}))
        work.append(len(other))
        others.extend(dict(fields).get("other_steps", 0) for _, fields in other)
        kinds.update(event[2] for event in trace_events)
    n = len(records)
    print(f"\nper request, over the {n} traces kept:")
    print(
        f"  events {statistics.mean(events):.1f} (max {max(events)}), tasks "
        f"{statistics.mean(tasks):.1f}, other_work entries {statistics.mean(work):.1f}"
    )
    if others:
        print(
            f"  other steps the loop ran while one wait lasted: mean "
            f"{statistics.mean(others):.1f}, max {max(others)}"
        )
    print("  events by kind: " + ", ".join(f"{k} {c / n:.1f}" for k, c in kinds.most_common()))


def _depth(coro: Any, limit: int = 200) -> int:
    """How many levels the ``cr_await`` chain from *coro* has (what `walk` goes through)."""
    depth = 0
    obj = coro
    while obj is not None and depth < limit:
        depth += 1
        obj = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
    return depth


class Probes:
    """Wraps two capture functions from outside (no asgitrace file is changed) to count and
    time them, in a pass without cProfile (whose per-call cost inflates small functions):

    - the chain walk at every suspension (``walk`` as `_stepper` calls it): how many per
      request, how deep, and their thread CPU time;
    - the ``other_work`` table built as each trace closes (``other_work`` as
      `_recorder` calls it): its thread CPU time.
    """

    def __init__(self) -> None:
        self.depths: list[int] = []
        self.walk_ns = 0
        self.other_work_ns = 0

    @contextlib.contextmanager
    def install(self) -> Iterator[None]:
        from asgitrace.capture import _recorder, _stepper

        walk, other_work = _stepper.walk, _recorder.other_work
        clock = time.thread_time_ns

        def timed_walk(coro: Any, *args: Any, **kwargs: Any) -> Any:
            self.depths.append(_depth(coro))
            start = clock()
            try:
                return walk(coro, *args, **kwargs)
            finally:
                self.walk_ns += clock() - start

        def timed_other_work(*args: Any) -> Any:
            start = clock()
            try:
                return other_work(*args)
            finally:
                self.other_work_ns += clock() - start

        _stepper.walk = timed_walk  # type: ignore[assignment]
        _recorder.other_work = timed_other_work  # type: ignore[assignment]
        try:
            yield
        finally:
            _stepper.walk, _recorder.other_work = walk, other_work


def main(argv: list[str] | None = None) -> int:
    """Start the database, profile, report."""
    args = parse_args(argv)
    endpoint = ENDPOINTS[args.endpoint]
    with running_db() as port:
        variant = instrument(args.variant, build_app([args.endpoint], db_port=port))
        app = variant.app
        loop = asyncio.new_event_loop()
        try:
            response = loop.run_until_complete(check_request(app, endpoint.path))
            if response.status != 200 or response.body != endpoint.body:
                raise SystemExit(f"GET {endpoint.path}: {response.status} {response.body[:80]!r}")
            loop.run_until_complete(drive(app, endpoint.path, args.warmup, args.concurrency))
            # Thread CPU time: what the loop's thread ran, not the time it was preempted
            # (the database process shares the cores) nor the watchdog thread's.
            profile = cProfile.Profile(time.thread_time_ns, 1e-9)
            profile.enable()
            loop.run_until_complete(drive(app, endpoint.path, args.requests, args.concurrency))
            profile.disable()
            probes = Probes()
            probed = max(200, args.requests // 2)
            start = time.thread_time_ns()
            with probes.install():
                loop.run_until_complete(drive(app, endpoint.path, probed, args.concurrency))
            probed_ns = time.thread_time_ns() - start
        finally:
            loop.close()
    stats = pstats.Stats(profile)
    if args.stats is not None:
        stats.dump_stats(str(args.stats))
    print(f"{args.variant} {endpoint.path}: {args.requests} requests, {args.concurrency} at once")
    report_profile(stats, args.top, args.requests)
    print(f"\nwithout cProfile: {probed_ns / 1e3 / probed:.0f} us CPU per request (loop thread)")
    if variant.tracer is not None:
        report_traces(list(variant.tracer._store)[-min(probed, 1000) :])  # type: ignore[attr-defined]
    if probes.depths:
        depths = probes.depths
        print(
            f"  chain walks {len(depths) / probed:.1f} per request, depth mean "
            f"{statistics.mean(depths):.1f}, max {max(depths)}; walks "
            f"{probes.walk_ns / 1e3 / probed:.1f} us CPU per request, other_work "
            f"{probes.other_work_ns / 1e3 / probed:.1f} us"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
