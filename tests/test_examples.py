"""Every script in ``examples/`` runs to completion and traces its request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))


def test_the_reference_example_exists() -> None:
    assert EXAMPLES_DIR / "reference_example.py" in EXAMPLES


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_and_prints_its_trace(script: Path) -> None:
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
    assert "/wait" in result.stdout, f"{script.name} printed no trace:\n{result.stdout}"
