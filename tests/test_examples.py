"""Every script in ``examples/`` runs to completion and shows what it says it shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))

# What each example's output must contain: the point of the example, seen in a real run.
# A new example must be added here (see the test below).
EXPECTED: dict[str, tuple[str, ...]] = {
    "reference_example.py": ("GET /wait answered 200", "Execution table · GET /wait → 200"),
    "test_reference_example.py": ("Testing GET /wait and GET /block", "1 passed, 1 xfailed"),
    "blocking_vs_nonblocking.py": (
        "Three requests to GET /wait at once",
        "Three requests to GET /wait-blocking at once",
        "Block the event loop",
    ),
    "concurrency.py": ("5 requests to GET /wait", "through uvicorn on 127.0.0.1:", "Timeline"),
    "middleware_and_child_tasks.py": (
        "GET /dashboard/7 answered 200",
        "load_user() in Task-",
        "load_orders() in Task-",
    ),
    "background_tasks.py": (
        "POST /signup: the response was sent after",
        "of work after the response was sent",
    ),
    "streaming.py": ("received b'liftoff\\n'", "GET /stream sent its body in 5 messages"),
    "sync_endpoint.py": (
        "GET /report at once took",
        "it left the loop free",
        "GET /report-async at once took",
        "it blocked the event loop",
    ),
    "trace_your_app.py": (
        "$ asgitrace trace trace_your_app:app /items/1 /wait",
        "Execution table · GET /wait → 200",
        "Summary · 2 requests",
    ),
}


def test_the_reference_example_exists() -> None:
    assert EXAMPLES_DIR / "reference_example.py" in EXAMPLES


def test_every_example_says_what_its_output_must_show() -> None:
    assert sorted(p.name for p in EXAMPLES) == sorted(EXPECTED)


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_and_shows_its_point(script: Path) -> None:
    """Examples are run as users run them: in their own interpreter, from the command line."""
    env = {
        **os.environ,
        "ASGITRACE_EXAMPLE_DELAY": "0.01",
        "PYTHONIOENCODING": "utf-8",
        "COLUMNS": "100",
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        encoding="utf-8",
        env=env,
        cwd=EXAMPLES_DIR.parent,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    for expected in EXPECTED.get(script.name, ("/wait",)):
        assert expected in result.stdout, (
            f"{script.name} did not print {expected!r}:\n{result.stdout}"
        )
