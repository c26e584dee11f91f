"""Goldens of every renderer at 80 and 120 columns (issue 19, Deliver 3).

Each golden under ``goldens/`` is the real output of the code for a fixed trace: the
tutorial's request, its blocking variant, a 12-await endpoint, a streaming response,
and a summary of them. The 12-await and streaming traces were recorded from real runs
(``goldens/*.json``, file names scrubbed to ``app.py``); the first two are the fixed
traces of ``test_render.py``. After a deliberate change of
layout, regenerate them with ``ASGITRACE_UPDATE_GOLDENS=1 python -m pytest
tests/views/test_goldens.py`` and read the diff before committing it.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from asgitrace import THEME, Trace
from asgitrace.views import SummaryView, render_trace, summarize

GOLDENS = Path(__file__).parent / "goldens"
WIDTHS = [80, 120]
BOX_DRAWING = re.compile("[\u2500-\u257f]")
TRACES = ("reference", "blocking", "twelve_awaits", "streaming")


def render(renderable: Any, width: int) -> str:
    console = Console(
        file=io.StringIO(),
        width=width,
        color_system=None,
        legacy_windows=False,
        record=True,
        theme=THEME,
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def _recorded(name: str) -> Trace:
    return Trace.from_dict(json.loads((GOLDENS / f"{name}.json").read_text(encoding="utf-8")))


def _traces() -> dict[str, Trace]:
    return {name: _recorded(name) for name in TRACES}


def _renderable(name: str, ascii: bool) -> Any:
    traces = _traces()
    if name == "summary":
        return SummaryView(summarize(list(traces.values())), blocking_threshold=0.1, ascii=ascii)
    return render_trace(traces[name], ascii=ascii)


NAMES = (*TRACES, "summary")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", NAMES)
def test_golden(name: str, width: int) -> None:
    actual = render(_renderable(name, ascii=False), width=width) + "\n"
    path = GOLDENS / f"{name}_{width}.txt"
    if os.environ.get("ASGITRACE_UPDATE_GOLDENS"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize("name", NAMES)
def test_every_renderer_fits_its_console(name: str, width: int) -> None:
    text = render(_renderable(name, ascii=False), width=width)
    assert max(len(line) for line in text.splitlines()) <= width


@pytest.mark.parametrize("name", NAMES)
def test_ascii_draws_no_box_anywhere(name: str) -> None:
    """Issue 19: ``--ascii`` still drew box lines in the summary tables."""
    for width in (80, 120):
        text = render(_renderable(name, ascii=True), width=width)
        assert not BOX_DRAWING.search(text), text


def test_folded_tables_stay_short_and_the_reference_keeps_six_rows() -> None:
    from asgitrace.views import execution_steps, variable_tracker

    traces = _traces()
    assert len(execution_steps(traces["reference"])) == 6
    assert len(variable_tracker(traces["reference"]).columns) == 5
    assert len(execution_steps(traces["twelve_awaits"])) <= 15
    assert len(variable_tracker(traces["twelve_awaits"]).columns) <= 6


def test_a_streamed_body_is_one_row_between_the_first_and_last_sends() -> None:
    """Issue 19: a streaming response folded to 16 rows, one per chunk and per await of
    its generator. Its body chunks between the response's start and its end now read
    as one row with their count, bytes and time; the first and last sends stay."""
    from asgitrace.views import execution_steps

    steps = execution_steps(_traces()["streaming"])
    actions = [step.action for step in steps]
    assert len(steps) <= 12, actions
    stream = [step for step in steps if step.kind == "stream"]
    assert len(stream) == 1, actions
    assert stream[0].action == "Stream the response body: sent 2 chunks, 20 B, over 14.5 ms"
    assert any(a.startswith("ASGI server sends response (200") for a in actions)
    assert "Send response body (0 B)" in actions
    assert not any("more to come" in a for a in actions)
    everything = execution_steps(_traces()["streaming"], detail="all")
    assert sum("more to come" in step.action for step in everything) == 2


def test_html_and_markdown_show_every_row_with_detail_all() -> None:
    """Issue 19: ``--all`` / ``detail="all"`` reached the terminal tables only; the HTML
    report and the markdown page stayed folded."""
    from asgitrace.views import explain, to_html

    streaming = _traces()["streaming"]
    chunk = "Send response body (10 B, more to come)"
    assert chunk not in to_html(streaming)
    assert chunk in to_html(streaming, detail="all")
    assert chunk not in explain(streaming)
    assert chunk in explain(streaming, detail="all")
