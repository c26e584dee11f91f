"""Child processes of the benchmark: spawned, read line by line with deadlines, always stopped.

Children get their commands on stdin and exit when it closes, so even a killed ``run.py``
leaves none behind; `stop` closes stdin, then sends SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

STOP_TIMEOUT = 5.0
"""Seconds a child may take to exit after each of: stdin closed, SIGTERM."""


@dataclass
class Child:
    """A running child process, its pipes and a file with its stderr."""

    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def stderr(self) -> str:
        """What the child printed on stderr so far (its tail)."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]


def spawn(name: str, cmd: list[str]) -> Child:
    """Start *cmd* with piped stdin/stdout, stderr to a temporary file, in its own session."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the child; closed in stop
    try:
        process = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True
        )
    except BaseException:
        log.close()
        raise
    return Child(name, process, log)


def read_line(child: Child, deadline: float) -> str:
    """The next line *child* prints on stdout, waiting until *deadline* (monotonic) at most.

    Raises:
        RuntimeError: the child exited or the deadline passed; the message has its stderr.
    """
    stdout = child.process.stdout
    assert stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stdout], [], [], 0.1)
        if ready:
            line = stdout.readline()
            if line:
                return line.decode().rstrip("\n")
            break  # EOF: the child is gone
        if child.process.poll() is not None:
            break
    reason = "exited" if child.process.poll() is not None else "did not answer in time"
    raise RuntimeError(f"{child.name} {reason}\n--- its stderr ---\n{child.stderr()}")


def send_line(child: Child, line: str) -> None:
    """Write one command line to *child*'s stdin."""
    stdin = child.process.stdin
    assert stdin is not None
    stdin.write(line.encode() + b"\n")
    stdin.flush()


def stop(child: Child) -> None:
    """Stop *child*: close its stdin, then SIGTERM, then SIGKILL; release its pipes."""
    process = child.process
    try:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        for signal_it in (None, process.terminate, process.kill):
            if signal_it is not None and process.poll() is None:
                signal_it()
            try:
                process.wait(STOP_TIMEOUT)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        if process.stdout is not None:
            process.stdout.close()
        child.log.close()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into SystemExit, so that ``finally`` blocks stop the children."""
    sys.exit(128 + signum)


def run_main(main: Callable[[], int]) -> None:
    """Run a benchmark script's *main* as the program: SIGTERM and Ctrl-C still stop its
    children (through ``finally``), and its return value is the exit status."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
