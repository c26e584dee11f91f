"""Over-HTTP measurements: uvicorn servers in subprocesses, loaded by wrk or by asyncio.

Each variant gets its own server process (started once, kept for every round), so tracing
state never leaks between variants and idle servers cost nothing while another is loaded.
The load generator runs in this process, on the other core. The server's CPU time is read
from ``/proc/<pid>/stat`` around each round: CPU time per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from _apps import ENDPOINTS, RESET_PATH, TRACES_PATH
from _loops import missing_loop, run_in_new_loop
from _procs import Child, read_line, spawn, stop

HOST = "127.0.0.1"
SERVE = Path(__file__).with_name("_serve.py")
STARTUP_TIMEOUT = 60.0
REQUEST_TIMEOUT = 5.0
"""Seconds one request may take before the load generator gives up on the round."""
MAX_RATE = 100_000
"""Requests per second per round assumed impossible: bounds the asyncio client's count."""


@dataclass
class Server:
    """A running `_serve.py` subprocess."""

    variant: str
    child: Child
    port: int = 0

    def url(self, path: str) -> str:
        """The full URL of *path* on this server."""
        return f"http://{HOST}:{self.port}{path}"


@dataclass
class LoadResult:
    """One round of load against one server and endpoint."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


# --- servers ------------------------------------------------------------------------------


def get(port: int, path: str, timeout: float = REQUEST_TIMEOUT) -> tuple[int, bytes]:
    """One blocking ``GET`` (readiness checks and small queries, never load)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def spawn_server(
    variant: str, loop: str, endpoints: list[str], options: Sequence[str] = ()
) -> Server:
    """Start `_serve.py` for one variant without waiting for it (see `wait_started`)."""
    cmd = [sys.executable, str(SERVE), "--variant", variant, "--loop", loop]
    cmd += ["--endpoints", ",".join(endpoints), *options]
    return Server(variant, spawn(f"the {variant} server", cmd))


def wait_started(server: Server, ready_path: str) -> None:
    """Wait until a spawned *server* printed its port and answers ``GET ready_path``.

    Raises:
        RuntimeError: it did not within `STARTUP_TIMEOUT` (its stderr is included).
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT
    line = read_line(server.child, deadline)
    if not line.startswith("PORT "):
        raise RuntimeError(f"{server.child.name} said {line!r} instead of its port")
    server.port = int(line.split()[1])
    while time.monotonic() < deadline and server.child.process.poll() is None:
        with contextlib.suppress(OSError):
            if get(server.port, ready_path, timeout=1.0)[0] == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(
        f"{server.child.name} on port {server.port} never answered\n"
        f"--- its stderr ---\n{server.child.stderr()}"
    )


@contextlib.contextmanager
def running_servers(
    variants: list[str], loop: str, endpoints: list[str], options: Sequence[str] = ()
) -> Iterator[dict[str, Server]]:
    """Start one server per variant (in parallel); stop them all on exit, whatever happens."""
    servers: dict[str, Server] = {}
    try:
        for variant in variants:
            servers[variant] = spawn_server(variant, loop, endpoints, options)
        for server in servers.values():
            wait_started(server, ENDPOINTS[endpoints[0]].path)
        yield servers
    finally:
        for server in servers.values():
            stop(server.child)


def stored_traces(server: Server) -> int | None:
    """How many traces the server's tracer holds, or spans its OpenTelemetry exporter got
    (None when it cannot tell)."""
    try:
        status, body = get(server.port, TRACES_PATH)
        return int(json.loads(body)["traces"]) if status == 200 else None
    except (OSError, ValueError, KeyError):
        return None


def reset(server: Server) -> None:
    """Empty the server's in-memory span exporter (otel; a no-op request for the others).

    Raises:
        RuntimeError: the server did not answer 200, or not at all (its stderr is included).
    """
    try:
        status, body = get(server.port, RESET_PATH)
    except OSError as exc:
        raise RuntimeError(
            f"{server.child.name} did not answer GET {RESET_PATH} ({exc}); exit status "
            f"{server.child.process.poll()}\n--- its stderr ---\n{server.child.stderr()}"
        ) from None
    if status != 200:
        raise RuntimeError(f"{server.child.name}: GET {RESET_PATH} answered {status} {body[:80]!r}")


# --- what the server process uses -------------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process *pid*, all its threads, in seconds.

    Fields 14 and 15 (utime, stime) of ``/proc/<pid>/stat``, in clock ticks (usually
    10 ms); ``None`` where there is no ``/proc`` or the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = text[text.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state), so field n is fields[n - 3].
    return (int(fields[14 - 3]) + int(fields[15 - 3])) / _CLOCK_TICKS


def rss_bytes(pid: int) -> int | None:
    """Resident set size of process *pid* (``VmRSS`` in ``/proc/<pid>/status``), or None."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# --- wrk ------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk_path() -> str | None:
    """The wrk executable, if there is one on PATH."""
    return shutil.which("wrk")


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(output: str) -> LoadResult:
    """Read requests/s, p50, p99, the request count and the errors from ``wrk --latency``.

    Raises:
        ValueError: the output lacks one of them.
    """
    percentiles = {
        m[1]: _ms(m[2], m[3])
        for m in re.finditer(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if rps is None or done is None or set(percentiles) != {"50", "99"}:
        raise ValueError(f"could not parse wrk output:\n{output}")
    errors = 0
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read \d+, write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx[1])
    return LoadResult(
        requests=int(done[1]),
        seconds=_ms(done[2], done[3]) / 1e3,
        rps=float(rps[1]),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        errors=errors,
    )


def run_wrk(wrk: str, url: str, duration: int, connections: int) -> LoadResult:
    """Load *url* with one wrk thread for *duration* seconds."""
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# --- the asyncio load generator ---------------------------------------------------------------


class _Load:
    """Shared state of one round of the asyncio load generator."""

    def __init__(self, max_requests: int, deadline: float) -> None:
        self.left = max_requests
        self.deadline = deadline
        self.latencies: list[float] = []
        self.errors = 0


def _content_length(head: bytes) -> int:
    start = head.lower().find(b"\r\ncontent-length:")
    if start < 0:
        raise ValueError(f"no content-length in response: {head[:200]!r}")
    start += len(b"\r\ncontent-length:")
    return int(head[start : head.index(b"\r\n", start)])


async def _connection(port: int, requests: list[bytes], load: _Load) -> None:
    """One keep-alive HTTP/1.1 connection sending requests back to back (no pipelining).

    With several *requests*, the round sends them in turn (round-robin over the round).
    """
    reader, writer = await asyncio.open_connection(HOST, port)
    clock = time.perf_counter
    latencies = load.latencies
    kinds = len(requests)
    try:
        while load.left > 0:
            start = clock()
            if start >= load.deadline:
                break
            load.left -= 1
            writer.write(requests[load.left % kinds])
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(_content_length(head))
            latencies.append(clock() - start)
            if head[9:12] != b"200":
                load.errors += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        load.errors += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load_round(
    port: int, paths: Sequence[str], duration: float, connections: int, max_requests: int
) -> LoadResult:
    requests = [f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode() for path in paths]
    start = time.perf_counter()
    load = _Load(max_requests, start + duration)
    workers = [_connection(port, requests, load) for _ in range(connections)]
    try:
        await asyncio.wait_for(asyncio.gather(*workers), duration + REQUEST_TIMEOUT)
    except asyncio.TimeoutError:
        raise RuntimeError(f"GET {', '.join(paths)}: the server stopped answering") from None
    seconds = time.perf_counter() - start
    ordered = sorted(load.latencies)
    return LoadResult(
        requests=len(ordered),
        seconds=seconds,
        rps=len(ordered) / seconds,
        p50_ms=_percentile(ordered, 0.50) * 1e3,
        p99_ms=_percentile(ordered, 0.99) * 1e3,
        errors=load.errors,
    )


def client_loop() -> str:
    """The event loop the asyncio load generator runs on: uvloop when installed."""
    return "asyncio" if missing_loop("uvloop") else "uvloop"


def run_asyncio_load(
    port: int,
    path: str | Sequence[str],
    duration: float,
    connections: int,
    max_requests: int | None = None,
) -> LoadResult:
    """Load ``GET path`` over *connections* keep-alive connections for *duration* seconds.

    *path* may be several paths, requested in turn. Bounded both ways: at most
    *max_requests* (default: `MAX_RATE` x *duration*) and at most *duration* plus
    `REQUEST_TIMEOUT` seconds.
    """
    paths = [path] if isinstance(path, str) else list(path)
    limit = max_requests if max_requests is not None else int(MAX_RATE * duration)
    return run_in_new_loop(
        client_loop(), lambda: _load_round(port, paths, duration, connections, limit)
    )
