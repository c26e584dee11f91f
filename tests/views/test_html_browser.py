"""The HTML report in a real browser: headless Chromium runs its script and draws it.

Needs Debian's ``chromium`` on PATH (``.ci/install-chromium`` installs it); skipped
without it. Each Chromium run is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from asgitrace import Trace, TraceMiddleware, Tracer
from asgitrace.views._html import write_html

CHROMIUM = shutil.which("chromium")
TIMEOUT = 30
HOSTILE = "<script>document.documentElement.setAttribute('data-pwned','1')</script>"
CSP_VIOLATION = "violates the following Content Security Policy"

if CHROMIUM is None and os.environ.get("ASGITRACE_REQUIRE_CHROMIUM"):
    # CI installs chromium and sets this: there, a missing browser is a failure, not a skip.
    raise RuntimeError("ASGITRACE_REQUIRE_CHROMIUM is set but chromium is not on PATH")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium on PATH (see .ci/install-chromium)"
)

# Driver script appended to a copy of the report (and allowed by its hash): it clicks
# the blocked segment, then presses keys, and writes what it saw into attributes.
DRIVER = """
(function () {
  var root = document.documentElement;
  var seg = document.querySelector(".seg.blocked");
  var lane = seg.closest(".lane");
  var box = seg.getBoundingClientRect();
  var at = {bubbles: true, clientX: box.left + 4, clientY: box.top + 4};
  seg.dispatchEvent(new MouseEvent("mouseover", at));
  seg.dispatchEvent(new MouseEvent("click", at));
  var tip = document.getElementById("tip");
  root.setAttribute("data-clicked-lane", lane.dataset.n);
  root.setAttribute("data-tip", tip.hidden ? "" : tip.textContent);
  var shown = document.querySelectorAll("section.request:not([hidden])");
  root.setAttribute("data-shown-after-click", shown.length === 1 ? shown[0].id : "");
  var timeline = document.getElementById("timeline-lanes");
  timeline.dispatchEvent(new KeyboardEvent("keydown", {key: "Home", bubbles: true}));
  timeline.dispatchEvent(new KeyboardEvent("keydown", {key: "ArrowDown", bubbles: true}));
  seg.dispatchEvent(new MouseEvent("mouseout", {bubbles: true}));
  root.setAttribute("data-tip-after-out", tip.hidden ? "hidden" : "shown");
})();
"""


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class _Collector(HTMLParser):
    """Every element with its attributes and text (a flat list is enough here)."""

    VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in self.VOID:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self.open:
            element.parts.append(data)


class Dom:
    def __init__(self, text: str) -> None:
        collector = _Collector()
        collector.feed(text)
        self.elements = collector.elements

    def by_id(self, id: str) -> Element:
        [element] = [e for e in self.elements if e.attrs.get("id") == id]
        return element

    def select(self, tag: str, cls: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag and cls in e.classes]


async def _serve(app: FastAPI) -> list[Trace]:
    # Well above a busy machine's slowest ordinary step; the untraced warm-up request
    # builds FastAPI's middleware stack, which can take tens of milliseconds.
    tracer = Tracer(blocking_threshold=0.06, exclude_paths=["/warm-up"])
    app.add_middleware(TraceMiddleware, tracer=tracer)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/warm-up")
        await asyncio.gather(client.get("/wait"), client.get("/block"))
        await client.get("/x/" + HOSTILE)
    return tracer.traces


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, reference_app: Callable[[], FastAPI]) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_html(asyncio.run(_serve(reference_app())), path)
    return path


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within {TIMEOUT} s: {command}")
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def dump_dom(tmp_path: Path, url: str) -> tuple[Dom, str]:
    done = chromium(tmp_path, "--dump-dom", url)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or CSP_VIOLATION in line], console
    return Dom(done.stdout), done.stdout


def test_script_selects_the_first_request_and_hides_the_others(
    report: Path, tmp_path: Path
) -> None:
    dom, text = dump_dom(tmp_path, report.as_uri())
    [html] = [e for e in dom.elements if e.tag == "html"]
    assert "js" in html.classes
    assert html.attrs["data-ready"] == "true"
    lanes = dom.select("div", "lane")
    assert [lane.attrs["id"] for lane in lanes] == ["lane-1", "lane-2", "lane-3"]
    assert [lane.attrs["aria-selected"] for lane in lanes] == ["true", "false", "false"]
    assert ["selected" in lane.classes for lane in lanes] == [True, False, False]
    sections = dom.select("section", "request")
    assert [("hidden" in s.attrs) for s in sections] == [False, True, True]
    assert dom.by_id("selection").text.startswith("Request 1 of 3")
    tip = dom.by_id("tip")
    assert "hidden" in tip.attrs
    assert tip.attrs["role"] == "tooltip"
    # Segments and table rows are there, in the live DOM, for every request.
    assert len(dom.select("div", "seg")) >= 6
    assert dom.select("div", "blocked")
    assert len(dom.select("tr", "mark-blocked")) == 1
    # The hostile path is text: its script did not run.
    assert "data-pwned" not in html.attrs
    assert "&lt;script&gt;document.documentElement" in text


def test_a_link_to_a_request_selects_it(report: Path, tmp_path: Path) -> None:
    dom, _ = dump_dom(tmp_path, report.as_uri() + "#req-3")
    lanes = dom.select("div", "lane")
    assert [lane.attrs["aria-selected"] for lane in lanes] == ["false", "false", "true"]
    sections = dom.select("section", "request")
    assert [("hidden" in s.attrs) for s in sections] == [True, True, False]
    assert dom.by_id("selection").text.startswith("Request 3 of 3")
    assert "GET /x/<script>" in dom.by_id("selection").text


def test_a_link_to_a_request_that_is_not_there_selects_the_first(
    report: Path, tmp_path: Path
) -> None:
    dom, _ = dump_dom(tmp_path, report.as_uri() + "#req-99")
    lanes = dom.select("div", "lane")
    assert [lane.attrs["aria-selected"] for lane in lanes] == ["true", "false", "false"]


def test_clicking_a_segment_shows_its_details_and_keys_move_the_selection(
    report: Path, tmp_path: Path
) -> None:
    page = report.read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(DRIVER.encode()).digest()).decode()
    marker = "script-src &#x27;sha256-"
    assert page.count(marker) == 1
    page = page.replace(marker, f"script-src &#x27;sha256-{digest}&#x27; &#x27;sha256-")
    page = page.replace("</body>", f"<script>{DRIVER}</script></body>")
    driven = tmp_path / "driven.html"
    driven.write_text(page, encoding="utf-8")
    dom, _ = dump_dom(tmp_path, driven.as_uri())
    [html] = [e for e in dom.elements if e.tag == "html"]
    n = html.attrs["data-clicked-lane"]
    assert html.attrs["data-shown-after-click"] == f"req-{n}"
    assert html.attrs["data-tip"].startswith("Blocked the loop · ")
    assert "time.sleep(0.12)" in html.attrs["data-tip"]
    assert html.attrs["data-tip-after-out"] == "hidden"
    detail = dom.by_id("seg-detail").text
    assert detail.startswith("Blocked the loop")
    assert "time.sleep(0.12)" in detail
    [row] = [e for e in dom.elements if e.tag == "tr" and "hl" in e.classes]
    assert "mark-blocked" in row.classes
    assert row.attrs["id"].startswith(f"req-{n}-step-")
    [active] = [e for e in dom.elements if "active" in e.classes]
    assert "blocked" in active.classes
    # Home, then ArrowDown: the second request is selected.
    lanes = dom.select("div", "lane")
    assert [lane.attrs["aria-selected"] for lane in lanes] == ["false", "true", "false"]
    assert [lane.attrs["tabindex"] for lane in lanes] == ["-1", "0", "-1"]
    assert dom.by_id("selection").text.startswith("Request 2 of 3")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshot_shows_a_drawn_page(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", report.as_uri())
    data = shot.read_bytes()
    assert _png_size(data) == (1200, 900)
    # A blank 1200x900 page compresses to a few kB; the report draws far more.
    assert len(data) > 30_000, len(data)


def test_page_without_traces_runs_its_script(tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    write_html([], path)
    dom, _ = dump_dom(tmp_path, path.as_uri())
    [html] = [e for e in dom.elements if e.tag == "html"]
    assert html.attrs["data-ready"] == "true"
    assert "No traces to show." in html.text
    assert not dom.select("div", "lane")
    assert not [e for e in dom.elements if e.attrs.get("id") == "tip"]
