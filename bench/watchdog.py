"""The blocking watchdog: how well it finds blocking lines, and what its hand-over costs.

Two parts, each in one interleaved run:

* ``accuracy``: a traced FastAPI app under uvicorn on 127.0.0.1, 100 concurrent
  requests a round: 10 block the loop with ``time.sleep``, 10 with CPU work, 80 await
  normally. A blocking request counts as found when its own trace has a ``blocked``
  event naming the blocking line; an innocent request with a ``blocked`` event counts
  as a false alarm.
* ``cost``: the hello endpoint over HTTP (``bench/_serve.py`` servers, the asyncio load
  generator of ``_http.py``), untraced and traced with each hand-over, interleaved
  rounds: requests/s, server CPU per request, and how late the watchdog's looks were
  (the time from its planned look to the moment it held the GIL).

Hand-overs: ``knock`` (shipped: a step boundary past the watchdog's due time shortens
the switch interval until it has looked) and ``contend`` (the watchdog simply asks for
the GIL). To measure an older asgitrace the same way, put its ``src`` first on
``PYTHONPATH``: the script reports the hand-over it finds (``handoff``: the loop thread
waited on a condition, before issue 16).

    python bench/watchdog.py --rounds 5 --duration 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BLOCK_S = 0.15
CONCURRENT = 100


# --- what a server process of the cost part runs (see _serve.py --handover) -----------


def _loopmon_module() -> Any:
    """asgitrace's loop monitor module, in this layout or the flat one of before issue 17."""
    import importlib

    try:
        return importlib.import_module("asgitrace.capture._loopmon")
    except ImportError:
        return importlib.import_module("asgitrace._loopmon")


def _running_server() -> Any:
    import importlib

    try:
        return importlib.import_module("asgitrace.cli._server").running_server
    except ImportError:
        return importlib.import_module("asgitrace._server").running_server


def handover_of_installed() -> str:
    _loopmon = _loopmon_module()
    return "knock" if hasattr(_loopmon._Watchdog, "knock") else "handoff"


def patch_watchdog(handover: str) -> dict[str, Any]:
    """Select *handover* on this process's watchdog and record how late its looks are.

    Returns the live statistics dict (``late_ns``: one entry per look that followed a
    planned timer, ``checks``)."""
    dog = _loopmon_module()._WATCHDOG
    stats: dict[str, Any] = {"late_ns": [], "checks": 0, "handover": handover}
    if handover == "contend":
        dog.knock = lambda: None  # type: ignore[method-assign]
    real = dog._check
    planned = [0]

    def check() -> float | None:
        now = time.perf_counter_ns()
        if planned[0]:
            stats["late_ns"].append(now - planned[0])
        timeout = real()
        stats["checks"] += 1
        planned[0] = 0 if timeout is None else time.perf_counter_ns() + int(timeout * 1e9)
        return timeout

    dog._check = check  # type: ignore[method-assign]
    return stats


def summary_of_late(late_ns: list[int]) -> dict[str, float]:
    late = sorted(max(n, 0) / 1e6 for n in late_ns)
    if not late:
        return {"looks": 0}
    return {
        "looks": len(late),
        "median_ms": round(statistics.median(late), 3),
        "p90_ms": round(late[int(0.9 * (len(late) - 1))], 3),
        "max_ms": round(late[-1], 3),
    }


# --- accuracy -------------------------------------------------------------------------


def _build_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/sleep")
    async def sleep_endpoint() -> dict[str, bool]:
        time.sleep(BLOCK_S)  # LINE-SLEEP
        return {"ok": True}

    @app.get("/cpu")
    async def cpu_endpoint() -> dict[str, int]:
        end = time.perf_counter() + BLOCK_S
        n = 0
        while time.perf_counter() < end:  # LINE-CPU
            n += 1
        return {"n": n}

    @app.get("/ok")
    async def ok_endpoint() -> dict[str, bool]:
        for _ in range(3):
            await asyncio.sleep(0)
        return {"ok": True}

    return app


def _line_of(marker: str) -> int:
    for number, text in enumerate(Path(__file__).read_text().splitlines(), 1):
        if text.rstrip().endswith(f"# {marker}") and "def " not in text:
            return number
    raise LookupError(marker)


async def _accuracy_round(handover: str, loop: str) -> dict[str, int]:
    import httpx

    from asgitrace import Tracer, instrument

    running_server = _running_server()

    tracer = Tracer(max_traces=CONCURRENT * 2)
    app = instrument(_build_app(), tracer=tracer)
    paths = ["/sleep"] * 10 + ["/cpu"] * 10 + ["/ok"] * 80
    limits = httpx.Limits(max_connections=CONCURRENT)
    async with (
        running_server(app) as url,
        httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client,
    ):
        await client.get("/ok")  # warm up: the task hook and the watchdog start
        tracer.clear()
        responses = await asyncio.gather(*(client.get(p) for p in paths))
    assert all(r.status_code == 200 for r in responses)
    lines = {"/sleep": _line_of("LINE-SLEEP"), "/cpu": _line_of("LINE-CPU")}
    out = {"sleep_found": 0, "cpu_found": 0, "blocked_events": 0, "false_alarms": 0}
    for trace in tracer.traces:
        blocked = [e for e in trace.blocking() if not e.get("after_response")]
        out["blocked_events"] += len(blocked)
        want = lines.get(trace.path)
        if want is None:
            out["false_alarms"] += bool(blocked)
            continue
        if any(e.get("line") == want and e.get("file") == __file__ for e in blocked):
            out[f"{trace.path[1:]}_found"] += 1
    return out


def accuracy(rounds: int, loops: list[str]) -> None:
    handovers = ["knock", "contend"] if handover_of_installed() == "knock" else ["handoff"]
    for loop in loops:
        totals: dict[str, dict[str, int]] = {h: {} for h in handovers}
        for _ in range(rounds):
            for handover in handovers:
                result = _run_isolated_accuracy(handover, loop)
                for key, value in result.items():
                    totals[handover][key] = totals[handover].get(key, 0) + value
        for handover, total in totals.items():
            print(
                f"accuracy {loop:7} {handover:8} sleep {total['sleep_found']}/{10 * rounds}"
                f"  cpu {total['cpu_found']}/{10 * rounds}"
                f"  false alarms {total['false_alarms']}/{80 * rounds}"
            )


def _run_isolated_accuracy(handover: str, loop: str) -> dict[str, int]:
    """One round in a fresh process: each hand-over gets a watchdog of its own."""
    import subprocess

    out = subprocess.run(
        [sys.executable, __file__, "--one-accuracy-round", handover, "--loop", loop],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _one_accuracy_round(handover: str, loop: str) -> None:
    if handover != "handoff":
        patch_watchdog(handover)
    if loop == "uvloop":
        import uvloop

        result = uvloop.run(_accuracy_round(handover, loop))
    else:
        result = asyncio.run(_accuracy_round(handover, loop))
    print(json.dumps(result))


# --- cost -----------------------------------------------------------------------------


@contextlib.contextmanager
def _pythonpath(src: str | None) -> Iterator[None]:
    """Servers spawned inside import asgitrace from *src* (``None``: the installed one)."""
    before = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = src
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def cost(rounds: int, duration: float, loops: list[str], compare: str | None) -> None:
    from _http import cpu_seconds, get, run_asyncio_load, running_servers

    handovers = ["knock", "contend"] if handover_of_installed() == "knock" else ["handoff"]
    kinds: list[tuple[str, str, str, str | None]] = [("untraced", "untraced", "knock", None)]
    kinds += [(f"traced/{h}", "traced", h, None) for h in handovers]
    if compare is not None:  # an older asgitrace, in the same interleaved rounds
        kinds.append(("traced/handoff (old)", "traced", "handoff", compare))
    for loop in loops:
        per: dict[str, list[tuple[float, float]]] = {k[0]: [] for k in kinds}
        late: dict[str, list[int]] = {k[0]: [] for k in kinds}
        for _ in range(rounds):
            for name, variant, handover, src in kinds:
                options = ["--handover", handover]
                with (
                    _pythonpath(src),
                    running_servers([variant], loop, ["hello"], options) as servers,
                ):
                    server = servers[variant]
                    assert server.port is not None
                    run_asyncio_load(server.port, "/hello", 0.5, 16)  # warm up
                    pid = server.child.process.pid
                    cpu0 = cpu_seconds(pid) or 0.0
                    result = run_asyncio_load(server.port, "/hello", duration, 16)
                    cpu1 = cpu_seconds(pid) or 0.0
                    status, body = get(server.port, "/bench-watchdog")
                    if status == 200:
                        late[name] += json.loads(body)["late_ns"]
                requests = max(result.requests, 1)
                per[name].append((requests / duration, (cpu1 - cpu0) / requests * 1e6))
        base_rps = statistics.median(r for r, _ in per["untraced"])
        base_cpu = statistics.median(c for _, c in per["untraced"])
        for name, values in per.items():
            rps = statistics.median(r for r, _ in values)
            cpu = statistics.median(c for _, c in values)
            print(
                f"cost {loop:7} {name:16} {rps:8.0f} req/s ({rps / base_rps:.2f}x)"
                f"  CPU {cpu:6.1f} us/req ({cpu / base_cpu:.2f}x)"
                f"  watchdog looks late {summary_of_late(late[name])}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--parts", default="accuracy,cost")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument(
        "--compare-with",
        metavar="SRC",
        help="also measure the asgitrace in SRC (a src/ folder of an older checkout)",
    )
    parser.add_argument("--one-accuracy-round", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_accuracy_round:
        _one_accuracy_round(args.one_accuracy_round, args.loop)
        return
    loops = [name for name in args.loops.split(",") if name]
    print(f"asgitrace from {os.path.dirname(__import__('asgitrace').__file__)}")
    print(f"hand-over found: {handover_of_installed()}; Python {sys.version.split()[0]}")
    if "accuracy" in args.parts:
        accuracy(args.rounds, loops)
    if "cost" in args.parts:
        cost(args.rounds, args.duration, loops, args.compare_with)


if __name__ == "__main__":
    main()
