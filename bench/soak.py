"""Soak: many requests through one traced uvicorn server, watching its memory for leaks.

    python bench/soak.py [--requests 100000] [--loop asyncio|uvloop] [--connections 16]
                         [--no-tracemalloc] [--json FILE]

One `_serve.py --soak` subprocess serves the benchmark app wrapped in
``TraceMiddleware(app, tracer=Tracer())`` (the defaults: a ring of 1000 traces). The asyncio
load generator sends the requests (``hello``, ``three`` and ``sync`` in turn) in chunks, and
the server's resident size (``VmRSS``) is read after each chunk. After the warm-up (the first
10 000 requests) and at the end, the server answers ``/bench-soak-stats``: live objects of
asgitrace's types and asyncio tasks after ``gc.collect()``, the tracer's ring, and a
tracemalloc snapshot; the two snapshots are compared here. Budget: RSS grows by at most
30 MB from the warm-up to the end. Nothing is asserted: the exit status is 1 only when the
soak could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _apps import ENDPOINTS, SELF_CONTAINED
from _http import Server, client_loop, get, rss_bytes, run_asyncio_load, running_servers
from _loops import LOOPS, missing_loop
from _procs import run_main
from _soakstats import STATS_PATH

Row = dict[str, Any]

WARMUP = 10_000
"""Requests before the baseline (RSS, live objects, tracemalloc snapshot) is taken."""
INTERVAL = 5_000
"""Requests between two readings of the server's RSS."""
BUDGET_MB = 30.0
"""Most the server's RSS may grow from the warm-up to the end."""
TOP_SITES = 10
STATS_TIMEOUT = 300.0
"""Seconds the statistics route may take (a full collection and a heap snapshot)."""
MIN_RATE = 50.0
"""Requests per second below which a chunk is given up (bounds every chunk in time)."""
WATCHED = ("Trace", "Recorder", "Stepper", "LoopMonitor", "asyncio.Task")
PER_REQUEST = ("Stepper", "Recorder", "asyncio.Task")
"""Objects made for each request: a leak makes their live count grow with the requests."""
LEAK_SLACK = 100
"""Live per-request objects at the end may exceed their count after the warm-up by this much
(idle server threads may hold the last request's context): a leak of one object per
request would be thousands."""
_SHORT = {
    sysconfig.get_paths()["purelib"] + os.sep: "<site-packages>/",
    sysconfig.get_paths()["stdlib"] + os.sep: "<stdlib>/",
    str(Path(__file__).resolve().parents[1]) + os.sep: "",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=100_000, help="requests in all")
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help="the server's loop")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument(
        "--no-tracemalloc",
        dest="tracemalloc",
        action="store_false",
        help="do not trace the server's allocations (no allocation sites, a lighter server)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    args = parser.parse_args(argv)
    if args.requests < 100:
        parser.error("--requests must be at least 100")
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    return args


def progress(message: str) -> None:
    """One line of progress on stderr (the results go to stdout)."""
    print(message, file=sys.stderr, flush=True)


def plan(total: int) -> tuple[int, list[int]]:
    """The warm-up size and the request counts at which RSS is read (the last is *total*).

    Short runs (a CI smoke) scale both down: a third of the requests warm up, and RSS is
    read ten times.
    """
    warmup = min(WARMUP, total // 3)
    interval = min(INTERVAL, max(100, total // 10))
    points = {*range(interval, total, interval), warmup, total}
    return warmup, sorted(points)


def stats(server: Server, snapshot: str = "") -> Row:
    """The server's answer to `STATS_PATH` (see `_soakstats`).

    Raises:
        RuntimeError: it did not answer 200 (the server's stderr is included).
    """
    query = f"?snapshot={snapshot}" if snapshot else ""
    status, body = get(server.port, STATS_PATH + query, timeout=STATS_TIMEOUT)
    if status != 200:
        raise RuntimeError(
            f"GET {STATS_PATH}{query} answered {status}: {body[:200]!r}\n"
            f"--- the server's stderr ---\n{server.child.stderr()}"
        )
    answer: Row = json.loads(body)
    return answer


def _mb(size: int | None) -> float | None:
    return size / 1e6 if size is not None else None


def _site(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for prefix, short in _SHORT.items():
        if name.startswith(prefix):
            name = short + name[len(prefix) :]
            break
    return f"{name}:{frame.lineno}"


def growing_sites(before: str, after: str, top: int = TOP_SITES) -> list[Row]:
    """The *top* allocation sites (file:line) that grew most, by size, between two dumps."""
    ignored = (
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, "<unknown>"),
    )
    first = tracemalloc.Snapshot.load(before).filter_traces(ignored)
    second = tracemalloc.Snapshot.load(after).filter_traces(ignored)
    diff = [d for d in second.compare_to(first, "lineno") if d.size_diff > 0]
    diff.sort(key=lambda d: d.size_diff, reverse=True)
    return [
        {
            "site": _site(d.traceback[0]),
            "size_diff": d.size_diff,
            "count_diff": d.count_diff,
            "size": d.size,
        }
        for d in diff[:top]
    ]


def soak(args: argparse.Namespace, snapshot_dir: Path) -> Row:
    """Run the soak; return everything measured (see `report`)."""
    paths = [ENDPOINTS[name].path for name in SELF_CONTAINED]
    warmup, points = plan(args.requests)
    options = ["--soak"]
    if args.tracemalloc:
        options += ["--tracemalloc", str(snapshot_dir)]
    result: Row = {"requests_planned": args.requests, "warmup": warmup, "samples": []}
    done = errors = 0
    started = time.perf_counter()
    with running_servers(["traced"], args.loop, list(SELF_CONTAINED), options) as servers:
        server = servers["traced"]
        pid = server.child.process.pid
        result["rss_start_mb"] = _mb(rss_bytes(pid))
        for point in points:
            want = point - done
            if want <= 0:
                continue
            chunk_started = time.perf_counter()
            got = run_asyncio_load(
                server.port, paths, 30 + want / MIN_RATE, args.connections, max_requests=want
            )
            done += got.requests
            errors += got.errors
            rate = got.requests / (time.perf_counter() - chunk_started)
            rss = _mb(rss_bytes(pid))
            result["samples"].append({"requests": done, "rss_mb": rss, "rps": rate})
            shown = f"{rss:.1f} MB" if rss is not None else "n/a"
            progress(f"soak: {done}/{args.requests} requests, RSS {shown}, {rate:.0f} req/s")
            if point == warmup:
                result["at_warmup"] = stats(server, "warmup" if args.tracemalloc else "")
                # Read after the statistics: taking them (a list of every object, a heap
                # snapshot) raises RSS once, which read before would count as growth.
                result["rss_warmup_mb"] = _mb(rss_bytes(pid))
        result["rss_end_mb"] = result["samples"][-1]["rss_mb"]
        result["at_end"] = stats(server, "end" if args.tracemalloc else "")
        result["server_stderr"] = server.child.stderr()
    result["requests"] = done
    result["errors"] = errors
    result["seconds"] = round(time.perf_counter() - started, 1)
    files = [result[k].get("snapshot_file") for k in ("at_warmup", "at_end")]
    if files[0] and files[1]:
        result["top_growth"] = growing_sites(files[0], files[1])
    return result


def _signed(mb: float | None) -> str:
    return f"{mb:+.1f} MB" if mb is not None else "n/a"


def _live_line(warm: Row, end: Row) -> str:
    others = sorted(set(end) - set(WATCHED), key=lambda name: -end[name])
    names = [*WATCHED, *others]
    return ", ".join(f"{name} {warm.get(name, 0)} -> {end.get(name, 0)}" for name in names)


def verdicts(result: Row) -> Row:
    """RSS growth against the budget, and whether per-request objects outlived requests."""
    warm, end = result.get("rss_warmup_mb"), result.get("rss_end_mb")
    growth = end - warm if warm is not None and end is not None else None
    after = [s["rss_mb"] for s in result["samples"] if s["requests"] >= result["warmup"]]
    peak = max(after) - warm if warm is not None and None not in after else None
    live, before = result["at_end"]["live"], result["at_warmup"]["live"]
    leaks = {name: live.get(name, 0) for name in PER_REQUEST}
    objects_ok = (
        all(count <= before.get(name, 0) + LEAK_SLACK for name, count in leaks.items())
        and live.get("Trace", 0) <= result["at_end"]["max_traces"] + LEAK_SLACK
    )
    return {
        "rss_growth_mb": growth,
        "rss_peak_growth_mb": peak,
        "rss_verdict": "n/a" if growth is None else ("met" if growth <= BUDGET_MB else "missed"),
        "live_at_end": leaks,
        "objects_verdict": "met" if objects_ok else "missed",
    }


def report(args: argparse.Namespace, result: Row, verdict: Row) -> None:
    """Print what the soak found."""

    def mb(value: float | None) -> str:
        return f"{value:.1f} MB" if value is not None else "n/a (no /proc)"

    warm, end = result["at_warmup"], result["at_end"]
    print(
        f"asgitrace soak: {result['requests']} requests (hello, three, sync in turn) through "
        f"one uvicorn server on {args.loop}, TraceMiddleware(app, tracer=Tracer()) "
        f"(max_traces={end['max_traces']}); load: asyncio client on {client_loop()}, "
        f"{args.connections} keep-alive connections; {result['seconds']} s"
    )
    print(f"python: {platform.python_implementation()} {platform.python_version()}")
    if args.tracemalloc:
        print(
            "tracemalloc: on in the server from before the first request: it costs memory "
            "(its own bookkeeping is in the RSS) and time (requests are slower); "
            "--no-tracemalloc for RSS alone"
        )
    if args.requests < 100_000:
        print(
            f"note: a short run ({args.requests} requests, warm-up {result['warmup']}): the "
            "figures are only indicative; the soak proper is 100 000 requests"
        )
    samples = ", ".join(
        f"{s['requests']}: {s['rss_mb']:.1f}" if s["rss_mb"] is not None else f"{s['requests']}: ?"
        for s in result["samples"]
    )
    print(f"RSS (MB) after N requests: {samples}")
    print(
        f"RSS after warm-up ({result['warmup']} requests, read after its statistics): "
        f"{mb(result.get('rss_warmup_mb'))}; "
        f"at the end ({result['requests']}): {mb(result.get('rss_end_mb'))}; "
        f"highest after warm-up: {_signed(verdict['rss_peak_growth_mb'])}"
    )
    growth = _signed(verdict["rss_growth_mb"])
    print(f"RSS growth {growth} (budget {BUDGET_MB:g} MB): {verdict['rss_verdict']}")
    if "traced_mb" in warm and "traced_mb" in end:
        print(
            f"Python heap (tracemalloc) after warm-up: {warm['traced_mb']:.1f} MB, at the end: "
            f"{end['traced_mb']:.1f} MB ({end['traced_mb'] - warm['traced_mb']:+.2f} MB)"
        )
    print(f"traces in the tracer's ring at the end: {end['traces_in_ring']} of {end['max_traces']}")
    if end["traces_in_ring"] == 0:
        print(
            "WARNING: the tracer stored no trace: tracing failed or was off, so this soak "
            "says nothing about asgitrace's memory. The server's stderr:\n"
            + (result["server_stderr"] or "(empty)")
        )
    print(
        f"live objects after gc.collect(), warm-up -> end: {_live_line(warm['live'], end['live'])}"
    )
    leaks = ", ".join(f"{name} {count}" for name, count in verdict["live_at_end"].items())
    for name, holders in end.get("held_by", {}).items():
        held = ", ".join(f"{kind} {count}" for kind, count in holders.items())
        print(f"  what holds the {name} objects alive at the end (referrers by type): {held}")
    print(
        f"live Stepper/Recorder/Task objects at end: {leaks} (expected ~0 besides the "
        f"server's own; a leak grows with the requests: met while none grew by more than "
        f"{LEAK_SLACK} since the warm-up and Trace objects stay within the ring): "
        f"{verdict['objects_verdict']}"
    )
    if result.get("top_growth"):
        print(f"top {TOP_SITES} growing allocation sites (tracemalloc, end vs warm-up, by size):")
        for site in result["top_growth"]:
            print(
                f"  {site['size_diff'] / 1024:+10.1f} KiB {site['count_diff']:+8d} blocks "
                f"(now {site['size'] / 1024:.1f} KiB)  {site['site']}"
            )
    elif args.tracemalloc:
        print("no allocation site grew between the warm-up and the end")
    print(f"errors: {result['errors']} (non-2xx answers and socket errors)")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, soak, report; 1 when the soak could not run."""
    args = parse_args(argv)
    reason = missing_loop(args.loop)
    if reason is not None:
        print(f"SKIPPED: the {args.loop} soak: {reason}", file=sys.stderr)
        return 0
    try:
        with tempfile.TemporaryDirectory(prefix="asgitrace-soak-") as snapshot_dir:
            result = soak(args, Path(snapshot_dir))
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"the soak could not run: {exc}", file=sys.stderr)
        return 1
    verdict = verdicts(result)
    report(args, result, verdict)
    if args.json is not None:
        args.json.write_text(json.dumps(result | {"verdicts": verdict}, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
