"""docs/testing.md's failure texts are what the code prints (issue 19, Deliver 6).

Two blocks: the pytest marker's failure and `assert_order`'s, both of the same request.

The block after ``<!-- captured: pytest marker failure -->`` in docs/testing.md was
printed by a real pytest session for the page's example (``time.sleep(1)`` in
``block_endpoint`` of ``app/main.py``, ``@pytest.mark.asgitrace(max_blocking_ms=50)``).
That request's trace was recorded once on Python 3.12 (``docs/testing_block.jsonl``: its
file paths cut to ``app/main.py`` and stack frames to their file names, as the README's
recordings are; see tests/cli/test_readme.py). This test runs the plugin again, in a pytest
of its own, on that trace and compares, with the README test's one normalisation
(trailing spaces). After a deliberate change of the message, regenerate the block with
``python tests/views/test_docs_captured.py`` and read the diff.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "testing.md"
RECORDED = Path(__file__).parent / "docs" / "testing_block.jsonl"
MARKERS = {
    name: re.compile(rf"(<!-- captured: {name} -->\n```text\n)(?P<block>.*?)(```)", re.S)
    for name in ("pytest marker failure", "assert_order failure")
}
NORMALISE = re.compile(r"[ \t]+$", re.M)
"""What may differ: trailing spaces only (as for the README's blocks)."""

INNER_TEST = '''\
import pytest

from asgitrace import Tracer, exporters


class Recorded(Tracer):
    """The tracer of the page's example, holding its recorded request."""

    @property
    def traces(self):
        return exporters.read_jsonl({recorded!r})


@pytest.fixture
def asgitrace_tracer():
    return Recorded()


@pytest.mark.asgitrace(max_blocking_ms=50)
def test_block(asgitrace_tracer):
    pass
'''


def marker_failure(tmp: Path) -> str:
    """The failure section pytest prints for the page's example, from its recorded run.

    A pytest of its own (a subprocess, 80 columns, no plugins of the outer session but
    asgitrace's), so that its header line is what a user's terminal shows.
    """
    test = tmp / "test_block.py"
    test.write_text(INNER_TEST.format(recorded=str(RECORDED)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env |= {"COLUMNS": "84", "NO_COLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    argv = ["-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-o", "addopts=", str(test)]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *argv],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=env,
        check=False,
    )
    out = run.stdout
    start = out.index("_" * 10)
    end = out.index("=" * 10, start)
    return NORMALISE.sub("", out[start:end]).rstrip("\n") + "\n"


def order_failure() -> str:
    """How pytest shows `assert_order`'s failure for the recorded request, down to the
    execution table's header (the page elides the rest)."""
    from asgitrace import exporters
    from asgitrace.testing import assert_order

    [trace] = exporters.read_jsonl(RECORDED)
    try:
        assert_order(trace, "received", "awaiting", "yielded", "resumed", "sent")
    except AssertionError as error:
        lines = f"asgitrace.{type(error).__qualname__}: {error}".splitlines()
    else:  # pragma: no cover - the recorded request never awaits
        raise AssertionError("the recorded request matched")
    rule = next(i for i, line in enumerate(lines) if line.startswith("─"))
    shown = [*lines[: rule + 1], "..."]
    return NORMALISE.sub("", "\n".join(f"E   {line}" for line in shown)) + "\n"


def _block(name: str) -> str:
    match = MARKERS[name].search(PAGE.read_text(encoding="utf-8"))
    assert match is not None, f"docs/testing.md lost its captured {name}"
    return match["block"]


def test_the_pages_marker_failure_is_what_the_plugin_prints(tmp_path: Path) -> None:
    assert NORMALISE.sub("", _block("pytest marker failure")) == marker_failure(tmp_path)


def test_the_pages_assert_order_failure_is_what_it_raises() -> None:
    assert NORMALISE.sub("", _block("assert_order failure")) == order_failure()


def regenerate() -> None:
    """Rewrite docs/testing.md's block from the recorded run."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        fresh = {"pytest marker failure": marker_failure(Path(tmp))}
    fresh["assert_order failure"] = order_failure()
    text = PAGE.read_text(encoding="utf-8")
    for name, block in fresh.items():
        text = MARKERS[name].sub(lambda m, block=block: m[1] + block + m[3], text)
    PAGE.write_text(text, encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    regenerate()
    print(f"rewrote {PAGE}")
