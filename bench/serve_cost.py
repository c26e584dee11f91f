"""What ``asgitrace serve`` costs next to ``instrument(app)`` under plain uvicorn: hello, over HTTP.

    python bench/serve_cost.py [--rounds 6] [--duration 2] [--connections 16]

Three servers of the benchmark's hello app, each a process of its own on 127.0.0.1, loaded
in interleaved rounds (order rotated each round) by the asyncio client of `_http`:

- ``instrument``: ``uvicorn app:app`` where ``app = instrument(hello_app)`` (uvicorn's
  defaults: uvloop when installed);
- ``instrument-asyncio``: the same with ``--loop asyncio`` (the loop `asgitrace serve`
  runs on);
- ``serve``: ``asgitrace serve hello:app``, its line per request written to a file.

Prints req/s and the server's CPU time per request (user + system, all threads, from
``/proc``), with the median of the per-round ratios to ``instrument``. Nothing is asserted.
Children are stopped on exit (stdin closed, SIGTERM, SIGKILL; see `_procs.stop`).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _http import cpu_seconds, get, run_asyncio_load
from _procs import Child, run_main, stop

HELLO = """\
from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}
"""
INSTRUMENTED = (
    "from asgitrace import instrument\nfrom hello import app as _app\n\napp = instrument(_app)\n"
)
PATH = "/hello"


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the servers bind it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def commands(app_dir: str, port: int) -> dict[str, list[str]]:
    """The command line of each server, listening on *port*."""
    uvicorn = [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--port", str(port)]
    uvicorn += ["--log-level", "warning", "--no-access-log", "instrumented:app"]
    serve = [sys.executable, "-m", "asgitrace", "serve", "hello:app", "--app-dir", app_dir]
    return {
        "instrument": uvicorn,
        "instrument-asyncio": [*uvicorn, "--loop", "asyncio"],
        "serve": [*serve, "--port", str(port)],
    }


def start(name: str, cmd: list[str], out: Path) -> Child:
    """Start *cmd* with its stdout to the file *out* (serve's lines: nobody reads a pipe)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the child; closed in stop
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=stdout, stderr=log, start_new_session=True
        )
    return Child(name, process, log)


def wait_ready(child: Child, port: int, timeout: float = 30.0) -> None:
    """Until ``GET /hello`` answers 200; then a short warm-up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.process.poll() is None:
        try:
            if get(port, PATH, timeout=1.0)[0] == 200:
                run_asyncio_load(port, PATH, 1.0, 4, max_requests=500)
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not start\n--- its stderr ---\n{child.stderr()}")


def main(argv: list[str] | None = None) -> int:
    """Start the servers, load them in interleaved rounds, print the medians."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    rows: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as app_dir:
        Path(app_dir, "hello.py").write_text(HELLO)
        Path(app_dir, "instrumented.py").write_text(INSTRUMENTED)
        servers: dict[str, tuple[Child, int]] = {}
        try:
            for name in commands(app_dir, 0):
                port = free_port()
                out = Path(app_dir, f"{name}.out")
                servers[name] = (
                    start(f"the {name} server", commands(app_dir, port)[name], out),
                    port,
                )
            for child, port in servers.values():
                wait_ready(child, port)
            names = list(servers)
            for round_ in range(args.rounds):
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    child, port = servers[name]
                    before = cpu_seconds(child.process.pid)
                    got = run_asyncio_load(port, PATH, args.duration, args.connections)
                    after = cpu_seconds(child.process.pid)
                    known = before is not None and after is not None and got.requests
                    cpu = (after - before) * 1e6 / got.requests if known else 0.0  # type: ignore[operator]
                    rows.setdefault(name, []).append((got.rps, cpu))
                print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            for child, _ in servers.values():
                child.process.terminate()  # they do not watch their stdin: SIGTERM at once
            for child, _ in servers.values():
                stop(child)
        lines = Path(app_dir, "serve.out").read_text().splitlines()
    print(f"serve printed {len(lines) - 2} request lines; its last line: {lines[-1]!r}")
    base = rows["instrument"]
    print(f"hello over HTTP, {args.connections} connections, {args.rounds} x {args.duration} s")
    for name, measured in rows.items():
        rps = statistics.median(r for r, _ in measured)
        cpu = statistics.median(c for _, c in measured)
        rps_ratio = statistics.median(a[0] / b[0] for a, b in zip(measured, base, strict=True))
        cpu_ratio = statistics.median(
            a[1] / b[1] for a, b in zip(measured, base, strict=True) if b[1]
        )
        print(
            f"{name:<19} {rps:6.0f} req/s ({rps_ratio:.2f}x)  "
            f"{cpu:4.0f} us CPU/request ({cpu_ratio:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    run_main(main)
