"""The README's captured demo output is what the code prints (issue 19, Deliver 6).

The two ``asgitrace demo`` blocks of README.md (each after a
``<!-- captured: asgitrace demo ARGS -->`` marker) were printed at 80 columns from real
runs through uvicorn on Python 3.12; those runs' traces are kept in ``readme/*.jsonl``.
This test prints the demo again from the same traces, through the real command, and
compares. The only normalisation is ``NORMALISE``: trailing spaces (rich pads each line
to the console's width). When the views change on purpose, regenerate the blocks with
``python tests/cli/test_readme.py`` (it rewrites them in place) and read the diff. New
runs are recorded with ``asgitrace.cli._commands._run_demo(blocking, 1.0, concurrency)``
on Python 3.12+ (return values are captured), each trace's ``to_dict()`` on one line,
file paths cut to ``src/asgitrace/cli/NAME`` and stack frames to their file names.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from asgitrace import THEME, Trace, exporters
from asgitrace.cli import _commands
from asgitrace.cli._parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RECORDED = Path(__file__).parent / "readme"
MARKER = re.compile(
    r"<!-- captured: asgitrace demo(?P<args>[^>]*?) -->\n```text\n(?P<block>.*?)```", re.S
)
NORMALISE = re.compile(r"[ \t]+$", re.M)
"""What may differ: trailing spaces only."""


def _traces(args: list[str]) -> list[Trace]:
    name = "demo_blocking" if "--blocking" in args else "demo"
    return list(exporters.read_jsonl(RECORDED / f"{name}.jsonl"))


def demo_output(args: list[str], width: int = 80) -> str:
    """What ``asgitrace demo ARGS`` prints at *width* columns for the recorded run."""
    traces = _traces(args)

    async def recorded(blocking: bool, delay: float, concurrency: int) -> list[Trace]:
        return traces

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, theme=THEME)
    saved = _commands._run_demo
    _commands._run_demo = recorded  # type: ignore[assignment]
    try:
        _commands.demo(build_parser().parse_args(["demo", *args]), console)
    finally:
        _commands._run_demo = saved  # type: ignore[assignment]
    return NORMALISE.sub("", buffer.getvalue())


def _blocks() -> list[tuple[list[str], str]]:
    text = README.read_text(encoding="utf-8")
    return [(m["args"].split(), m["block"]) for m in MARKER.finditer(text)]


def test_the_readme_has_both_demo_blocks() -> None:
    assert [args for args, _ in _blocks()] == [[], ["--blocking", "-c", "2"]]


@pytest.mark.parametrize(
    ("args", "block"),
    [pytest.param(args, block, id=" ".join(["demo", *args])) for args, block in _blocks()],
)
def test_the_readme_demo_block_is_what_the_code_prints(args: list[str], block: str) -> None:
    assert NORMALISE.sub("", block) == demo_output(args)


def regenerate() -> None:
    """Rewrite the README's demo blocks from the recorded runs."""
    text = README.read_text(encoding="utf-8")

    def fresh(m: re.Match[str]) -> str:
        args = m["args"]
        return f"<!-- captured: asgitrace demo{args} -->\n```text\n{demo_output(args.split())}```"

    README.write_text(MARKER.sub(fresh, text), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    regenerate()
