"""Benchmark asgitrace's overhead: in-process, over HTTP and per suspension.

    python bench/run.py [--quick] [--rounds N] [--requests N] [--loop asyncio|uvloop|both]
                        [--duration S] [--json FILE] [--parts inprocess,http,suspension]
                        [--variants untraced,traced,sampled,slow,otel]

Variants (untraced, asgitrace full, 1 % sampled and slow-only, OpenTelemetry's FastAPI
instrumentation) are measured in interleaved rounds (A, B, C, A, B, C, ... with the order
rotated each round), never all of A and then all of B, so drift in the machine's speed hits
every variant alike. See bench/README.md for what each figure means. Nothing is asserted:
the targets are printed in a table of their own, met or missed by the median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from _apps import ENDPOINTS, NEEDS_DB, SLOW_THRESHOLD, SUSPEND_PATH, VARIANTS, missing_variant
from _fakedb import running_db
from _http import (
    LoadResult,
    Server,
    client_loop,
    cpu_seconds,
    reset,
    run_asyncio_load,
    run_wrk,
    running_servers,
    stored_traces,
    wrk_path,
)
from _inprocess import running_workers
from _loops import LOOPS, missing_loop
from _procs import run_main
from _report import (
    console,
    http_tables,
    inprocess_table,
    summarize_http,
    summarize_inprocess,
    summarize_suspension,
    summarize_targets,
    suspension_table,
    targets_table,
    targets_tally,
)

T = TypeVar("T")
Row = dict[str, Any]

PARTS = ("inprocess", "http", "suspension")
QUICK = {"rounds": 3, "requests": 1000, "duration": 1}
FULL = {"rounds": 7, "requests": 5000, "duration": 3}
HTTP_WARMUP_REQUESTS = 300


def _csv(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated subset of *choices*."""

    def parse(text: str) -> list[str]:
        items = [item for item in text.split(",") if item]
        bad = [item for item in items if item not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)} (got {text!r})")
        return items

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ``--quick`` only changes the defaults of the sizes."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"a shorter run (about 2 minutes): {QUICK}"
    )
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds (default {FULL})")
    parser.add_argument("--requests", type=int, help="in-process requests per round and variant")
    parser.add_argument("--duration", type=int, help="seconds of HTTP load per round and variant")
    parser.add_argument("--loop", choices=(*LOOPS, "both"), default="both")
    parser.add_argument("--parts", type=_csv(PARTS), default=list(PARTS))
    parser.add_argument(
        "--variants",
        type=_csv(VARIANTS),
        default=list(VARIANTS),
        help="variants to measure (untraced is always measured: ratios are to it)",
    )
    parser.add_argument("--endpoints", type=_csv(tuple(ENDPOINTS)), default=list(ENDPOINTS))
    parser.add_argument("--connections", type=int, default=16, help="HTTP keep-alive connections")
    parser.add_argument("--load", choices=("auto", "wrk", "asyncio"), default="auto")
    parser.add_argument(
        "--suspensions", type=int, default=1000, help="awaits per request (per-suspension part)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the raw results here")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("rounds", "requests", "duration", "connections", "suspensions"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be at least 1")
    return args


def progress(message: str) -> None:
    """One line of progress on stderr (the results go to stdout)."""
    print(message, file=sys.stderr, flush=True)


def rotated(items: Sequence[T], by: int) -> list[T]:
    """*items* rotated left by *by*: round r starts with a different variant."""
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]


# --- the three parts ----------------------------------------------------------------------------


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[list[str]]:
    """The fake database process when an endpoint needs it (`_fakedb`), for the whole run.

    Yields:
        The options that tell workers and servers its port (none without it). It is
        stopped on exit, whatever happens.
    """
    wanted = NEEDS_DB & set(args.endpoints) and {"inprocess", "http"} & set(args.parts)
    if not wanted:
        yield []
        return
    with running_db() as port:
        progress(f"fake database listening on 127.0.0.1:{port} (a process of its own)")
        yield ["--db-port", str(port)]


def bench_inprocess(
    loops: list[str], variants: list[str], args: argparse.Namespace, db: list[str]
) -> list[Row]:
    """Interleaved rounds of in-process requests: every loop, endpoint and variant.

    Each variant lives in a worker process of its own (see `_worker.py`), started once for
    every loop: each measurement runs in a fresh loop of the kind asked for.
    """
    warmup = max(50, args.requests // 10)
    rows: list[Row] = []
    options = ["--endpoints", ",".join(args.endpoints), *db]
    stored: dict[str, int] = {}
    with running_workers(variants, options) as workers:
        for round_ in range(args.rounds):
            for loop in loops:
                for name in args.endpoints:
                    endpoint = ENDPOINTS[name]
                    line = []
                    for variant in rotated(variants, round_):
                        got = workers[variant].measure(
                            endpoint.path, args.requests, warmup, endpoint.body, loop
                        )
                        row = _row(loop, name, variant, round_, requests=args.requests)
                        rows.append(row | {"us_per_request": got.ns_per_request / 1e3})
                        line.append(f"{variant} {got.ns_per_request / 1e3:.1f} us")
                        stored[variant] = got.traces
                    progress(
                        f"in-process [{loop}] {round_ + 1}/{args.rounds} {name}: " + ", ".join(line)
                    )
    for variant, count in stored.items():
        _check_traced(variant, count, "in-process")
    return rows


def _check_traced(variant: str, traces: int | None, where: str) -> None:
    """Warn when a tracing variant recorded nothing: tracing was off, its figures are void.

    The slow variant is expected to store nothing (no request of the benchmark is slower
    than its threshold); the otel variant's count is of finished spans.
    """
    if variant in ("untraced", "slow") or traces is None or traces > 0:
        return
    what = "finished no span" if variant == "otel" else "stored no trace"
    progress(f"WARNING ({where}): the {variant} variant {what}: was tracing disabled?")


def _row(loop: str, endpoint: str, variant: str, round_: int, **fields: Any) -> Row:
    """One raw measurement, as written to the JSON file."""
    return {"loop": loop, "endpoint": endpoint, "variant": variant, "round": round_, **fields}


def bench_suspension(loops: list[str], args: argparse.Namespace) -> list[Row]:
    """Interleaved rounds of requests that each await ``asyncio.sleep(0)`` N times."""
    n = args.suspensions
    count = max(5, args.requests // 50)
    body = json.dumps({"suspensions": n}, separators=(",", ":")).encode()
    # Room for every event of a request (a few per suspension), so that none is dropped.
    options = ["--endpoints", "", "--suspensions", str(n), "--max-events", str(8 * n + 100)]
    rows: list[Row] = []
    with running_workers(["untraced", "traced"], options) as workers:
        for round_ in range(args.rounds):
            for loop in loops:
                line = []
                for variant in rotated(list(workers), round_):
                    warmup = max(2, count // 10)
                    got = workers[variant].measure(SUSPEND_PATH, count, warmup, body, loop)
                    row = _row(loop, "suspend", variant, round_, requests=count, suspensions=n)
                    rows.append(row | {"ns_per_suspension": got.ns_per_request / n})
                    line.append(f"{variant} {got.ns_per_request / n:.0f} ns")
                    _check_traced(variant, got.traces, "per suspension")
                progress(f"suspension [{loop}] {round_ + 1}/{args.rounds}: {', '.join(line)}")
    return rows


def load_generator(choice: str) -> str | None:
    """The wrk executable to use, or ``None`` for the asyncio load generator."""
    wrk = wrk_path()
    if choice == "wrk" and wrk is None:
        progress("wrk is not on PATH: using the asyncio load generator instead")
    return None if choice == "asyncio" else wrk


def _warm_up(servers: dict[str, Server], endpoints: list[str]) -> None:
    """A few hundred requests per server and endpoint: imports, caches, the thread pool."""
    for name in endpoints:
        for server in servers.values():
            path = ENDPOINTS[name].path
            run_asyncio_load(server.port, path, 2.0, 4, max_requests=HTTP_WARMUP_REQUESTS)


def _load(server: Server, path: str, args: argparse.Namespace, wrk: str | None) -> Row:
    """One round of load on one server and endpoint, with wrk or the asyncio client.

    Returns:
        The load generator's figures, and the server's CPU time (user + system, all its
        threads) during the round: ``server_cpu_s`` and ``cpu_us_per_request`` (``None``
        without ``/proc``).
    """
    reset(server)  # empties the otel variant's span exporter; nothing for the others
    pid = server.child.process.pid
    before = cpu_seconds(pid)
    result: LoadResult
    if wrk is not None:
        result = run_wrk(wrk, server.url(path), args.duration, args.connections)
    else:
        result = run_asyncio_load(server.port, path, args.duration, args.connections)
    after = cpu_seconds(pid)
    cpu = after - before if before is not None and after is not None else None
    per_request = cpu * 1e6 / result.requests if cpu is not None and result.requests else None
    return asdict(result) | {"server_cpu_s": cpu, "cpu_us_per_request": per_request}


def bench_http(
    loop: str, variants: list[str], args: argparse.Namespace, wrk: str | None, db: list[str]
) -> tuple[list[Row], Row]:
    """Interleaved rounds of HTTP load against one uvicorn subprocess per variant.

    Returns:
        The rows, and how many traces (spans for otel) each server made (a sanity check).
    """
    rows: list[Row] = []
    with running_servers(variants, loop, args.endpoints, db) as servers:
        _warm_up(servers, args.endpoints)
        for round_ in range(args.rounds):
            for name in args.endpoints:
                line = []
                for variant in rotated(variants, round_):
                    got = _load(servers[variant], ENDPOINTS[name].path, args, wrk)
                    rows.append(_row(loop, name, variant, round_, **got))
                    cpu = got["cpu_us_per_request"]
                    line.append(
                        f"{variant} {got['rps']:.0f}/s p99 {got['p99_ms']:.2f} ms"
                        + (f" cpu {cpu:.0f} us" if cpu is not None else "")
                    )
                progress(f"http [{loop}] {round_ + 1}/{args.rounds} {name}: {', '.join(line)}")
        traces = {variant: stored_traces(server) for variant, server in servers.items()}
    for variant, count in traces.items():
        _check_traced(variant, count, f"http, {loop}")
    return rows, traces


# --- report -------------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment(
    args: argparse.Namespace, loops: list[str], variants: list[str], wrk: str | None
) -> Row:
    """Everything needed to reproduce or judge the run."""
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    if wrk is not None:
        load = f"wrk ({wrk}), 1 thread, {args.connections} connections"
    else:
        load = f"asyncio client on {client_loop()}, {args.connections} keep-alive connections"
    return {
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cores": cores,
        "usable_cores": usable,
        "loops": loops,
        "variants": variants,
        "versions": {
            d: _version(d)
            for d in (
                "asgitrace",
                "fastapi",
                "starlette",
                "uvicorn",
                "uvloop",
                "opentelemetry-sdk",
                "opentelemetry-instrumentation-fastapi",
            )
        },
        "http_parser": "httptools" if _version("httptools") != "not installed" else "h11",
        "load_generator": load,
        "settings": {
            k: getattr(args, k)
            for k in ("quick", "rounds", "requests", "duration", "parts", "endpoints", "variants")
        }
        | {"connections": args.connections, "suspensions": args.suspensions},
    }


def _stored_line(counts: Row) -> str:
    """How many traces each server made, saying what each count should be."""
    notes = {
        "slow": f"slow-only, threshold {SLOW_THRESHOLD:g} s: 0 expected",
        "otel": "finished spans",
        "sampled": "about 1 % of the requests",
    }
    return ", ".join(
        f"{variant} {count if count is not None else '?'}"
        + (f" ({notes[variant]})" if variant in notes else "")
        for variant, count in counts.items()
    )


def print_report(env: Row, results: Row, args: argparse.Namespace) -> None:
    """The header, one table per part, then the targets."""
    out = console()
    out.print(f"[bold]asgitrace overhead benchmark[/] (asgitrace {env['versions']['asgitrace']})")
    out.print(f"command:  {env['command']}", markup=False, highlight=False)
    out.print(
        f"python:   {env['python']} on {env['platform']}; "
        f"cores: {env['cores']} ({env['usable_cores']} usable)",
        markup=False,
    )
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if k != "asgitrace")
    out.print(f"loops:    {', '.join(env['loops'])}; {versions}", markup=False)
    out.print(f"variants: {', '.join(env['variants'])}", markup=False)
    out.print(
        f"rounds:   {args.rounds} interleaved, variant order rotated each round", markup=False
    )
    if results.get("inprocess"):
        out.print(inprocess_table(results["inprocess"]["summary"], args.requests))
    if results.get("suspension"):
        out.print(suspension_table(results["suspension"]["summary"]))
    if results.get("http"):
        server = f"uvicorn ({env['http_parser']}) in a subprocess"
        title = f"Over HTTP: {server}, {args.duration} s per round"
        out.print(f"HTTP load: {env['load_generator']}", markup=False, highlight=False)
        for table in http_tables(results["http"]["summary"], title):
            out.print(table)
        for loop, counts in results["http"]["stored_traces"].items():
            line = f"traces stored by each server [{loop}]: {_stored_line(counts)}"
            out.print(line, markup=False, highlight=False)
    if results.get("targets"):
        out.print(targets_table(results["targets"]))
        out.print(targets_tally(results["targets"]), markup=False, highlight=False)


# --- main ---------------------------------------------------------------------------------------


def usable_loops(choice: str) -> list[str]:
    """The loops asked for that exist here; say clearly which are skipped and why."""
    loops = list(LOOPS) if choice == "both" else [choice]
    return _usable(loops, missing_loop, "the {} runs")


def usable_variants(asked: list[str]) -> list[str]:
    """The variants asked for (and untraced, the base of every ratio) that can run here;
    say clearly which are skipped and why."""
    wanted = [v for v in VARIANTS if v == "untraced" or v in asked]
    return _usable(wanted, missing_variant, "{} variant")


def _usable(names: list[str], missing: Callable[[str], str | None], label: str) -> list[str]:
    """*names* without those *missing* gives a reason for, each skip said on stderr."""
    usable = []
    for name in names:
        reason = missing(name)
        if reason is None:
            usable.append(name)
        else:
            print(f"SKIPPED: {label.format(name)}: {reason}", file=sys.stderr, flush=True)
    return usable


def run(args: argparse.Namespace, loops: list[str], variants: list[str], wrk: str | None) -> Row:
    """Run every part asked for on every loop; return raw rows and summaries."""
    results: Row = {}
    inprocess: list[Row] = []
    suspension: list[Row] = []
    http: list[Row] = []
    traces: Row = {}
    with database(args) as db:
        if "inprocess" in args.parts:
            inprocess = bench_inprocess(loops, variants, args, db)
        if "suspension" in args.parts:
            suspension = bench_suspension(loops, args)
        if "http" in args.parts:
            for loop in loops:
                rows, traces[loop] = bench_http(loop, variants, args, wrk, db)
                http += rows
    if inprocess:
        results["inprocess"] = {"rounds": inprocess, "summary": summarize_inprocess(inprocess)}
    suspended = summarize_suspension(suspension) if suspension else []
    if suspension:
        results["suspension"] = {"rounds": suspension, "summary": suspended}
    if http:
        results["http"] = {
            "rounds": http,
            "summary": summarize_http(http),
            "stored_traces": traces,
        }
    results["targets"] = summarize_targets(inprocess, http, suspended)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, measure, print, optionally write JSON."""
    args = parse_args(argv)
    loops = usable_loops(args.loop)
    if not loops:
        print("nothing to measure: no requested event loop is available", file=sys.stderr)
        return 0
    variants = usable_variants(args.variants)
    wrk = load_generator(args.load) if "http" in args.parts else None
    env = environment(args, loops, variants, wrk)
    started = time.perf_counter()
    results = run(args, loops, variants, wrk)
    env["seconds"] = round(time.perf_counter() - started, 1)
    print_report(env, results, args)
    print(f"total time: {env['seconds']} s")
    if args.json is not None:
        args.json.write_text(json.dumps({"environment": env, **results}, indent=2) + "\n")
        print(f"raw results written to {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
