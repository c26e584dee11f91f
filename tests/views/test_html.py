"""The HTML report: structure, escaping, no network references, file permissions."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from asgitrace import Trace, TraceMiddleware, Tracer
from asgitrace.views import execution_steps, key_moments, variable_tracker
from asgitrace.views._html import MAX_DETAILS, to_html, write_html
from asgitrace.views._html_timeline import ticks as _ticks

HOSTILE = "<script>alert(1)</script>"
VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "source", "wbr", "area", "base"})


class Node:
    """One element of a parsed page: its tag, attributes, children and text."""

    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[Node] = []
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [
            node
            for node in self.walk()
            if (tag is None or node.tag == tag) and (cls is None or cls in node.classes)
        ]

    def by_id(self, id: str) -> Node:
        [node] = [node for node in self.walk() if node.attrs.get("id") == id]
        return node


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_endtag(self, tag: str) -> None:
        assert self.current.tag == tag, f"</{tag}> closes <{self.current.tag}>"
        assert self.current.parent is not None
        self.current = self.current.parent

    def handle_data(self, data: str) -> None:
        node: Node | None = self.current
        while node is not None:
            node.parts.append(data)
            node = node.parent


def parse(page: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.current is builder.root, "unclosed elements"
    return builder.root


def page_data(doc: Node) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(doc.by_id("asgitrace-data").text)
    return data


# -- traces ---------------------------------------------------------------------------------


async def _serve(app: FastAPI) -> dict[str, Any]:
    # A threshold well above a busy machine's slowest ordinary step; the first (untraced)
    # request builds FastAPI's middleware stack, which can take tens of milliseconds.
    tracer = Tracer(blocking_threshold=0.06, exclude_paths=["/warm-up"])
    app.add_middleware(TraceMiddleware, tracer=tracer)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.get("/warm-up")
        await client.get("/wait")
        # The blocking endpoint holds the loop while the other request sleeps.
        await asyncio.gather(client.get("/wait"), client.get("/block"))
        await client.get("/x/" + HOSTILE, headers={"x-evil": HOSTILE})
    traces = tracer.traces
    return {
        "wait": traces[0],
        "concurrent_wait": next(t for t in traces[1:3] if t.path == "/wait"),
        "block": next(t for t in traces if t.path == "/block"),
        "hostile": traces[3],
        "all": traces,
    }


@pytest.fixture(scope="module")
def real(reference_app: Callable[[], FastAPI]) -> dict[str, Any]:
    return asyncio.run(_serve(reference_app()))


def _event(seq: int, t_us: int, kind: str, task: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "t_ns": 1_000_000_000 + t_us * 1000,
        "kind": kind,
        "task": {"id": task, "name": f"Task-{task}"},
        "fields": fields,
    }


def synthetic(
    events: list[dict[str, Any]],
    *,
    path: str = "/s",
    start_us: int = 0,
    **fields: Any,
) -> Trace:
    """A trace from event dictionaries (times in µs from 1 s), shifted by *start_us*."""
    for e in events:
        e["t_ns"] += start_us * 1000
    data: dict[str, Any] = {
        "schema_version": 1,
        "id": "feedc0de",
        "type": "http",
        "method": "GET",
        "path": path,
        "route": None,
        "query": "",
        "headers": [],
        "response_headers": [],
        "status": 200,
        "start": 1_700_000_000.0,
        "start_ns": 1_000_000_000 + start_us * 1000,
        "end_ns": events[-1]["t_ns"],
        "dropped": 0,
        "events": events,
    }
    data.update(fields)
    return Trace.from_dict(data)


def simple_trace(
    path: str = "/s", start_us: int = 0, duration_us: int = 1000, **fields: Any
) -> Trace:
    return synthetic(
        [
            _event(1, 10, "received", type="http", path=path, method="GET"),
            _event(2, duration_us - 20, "sent", type="http.response.start", status=200),
            _event(3, duration_us - 10, "sent", type="http.response.body", body_bytes=2),
            _event(4, duration_us, "completed", status=200),
        ],
        path=path,
        start_us=start_us,
        **fields,
    )


# -- structure ------------------------------------------------------------------------------


def test_report_of_one_real_request_has_header_timeline_and_its_tables(
    real: dict[str, Any],
) -> None:
    trace: Trace = real["wait"]
    doc = parse(to_html([trace], title="My report"))
    assert doc.find_all("title")[0].text == "My report"
    stats = [s.text for s in doc.find_all("div", "stat")]
    assert stats[0] == "1request"
    assert any(s.endswith("time span") for s in stats)
    assert any(s.endswith("first arrival") and "UTC" in s for s in stats)

    timeline = doc.by_id("timeline")
    legend = timeline.find_all("div", "legend")[0].text
    assert legend == "runningawaitingblocked the loopafter the response"
    ticks = [t.text for t in timeline.find_all("span", "tick")]
    assert ticks[0] == "0"
    assert len(ticks) >= 4
    assert all(t.endswith(" ms") for t in ticks[1:])
    [lane] = timeline.find_all("div", "lane")
    assert lane.attrs["id"] == "lane-1"
    assert lane.attrs["title"] == "GET /wait"
    states = [seg.attrs["data-state"] for seg in lane.find_all("div", "seg")]
    assert {"running", "awaiting"} <= set(states) <= {"running", "awaiting", "after"}
    # The sleep shows as a segment whose details name the await and point to its row.
    [sleep] = [
        seg
        for seg in lane.find_all("div", "seg")
        if "asyncio.sleep(0.01)" in seg.attrs["data-what"]
    ]
    assert sleep.attrs["data-state"] == "awaiting"
    assert " — Event loop " in sleep.attrs["data-what"]
    steps = execution_steps(trace)
    assert steps[int(sleep.attrs["data-step"]) - 1].kind == "await"
    assert doc.by_id("seg-detail").text.startswith("Hover a segment")

    section = doc.by_id("req-1")
    assert section.tag == "section"
    assert "request" in section.classes
    heading = section.find_all("h2")[0].text
    assert heading == "#1GET/wait→200"
    [table] = section.find_all("table", "exec")
    header = [th.text for th in table.find_all("th")]
    assert header == [
        "Step",
        "At",
        "Took",
        "Action",
        "State Before",
        "Awaited?",
        "State After",
        "Output",
    ]
    rows = table.find_all("tbody")[0].find_all("tr")
    assert [r.attrs["id"] for r in rows] == [f"req-1-step-{s.number}" for s in steps]
    assert [r.find_all("td")[3].text for r in rows] == [s.action for s in steps]
    assert rows[2].find_all("td")[3].text == "Await asyncio.sleep(0.01)"
    assert rows[2].find_all("td")[5].text == "Yes"
    assert "mark-loop" in rows[3].classes

    tracker = variable_tracker(trace)
    [tracker_table] = section.find_all("table", "tracker")
    assert [th.text for th in tracker_table.find_all("th")] == ["Variable", *tracker.columns]
    tracker_rows = tracker_table.find_all("tbody")[0].find_all("tr")
    assert [[td.text for td in r.find_all("td")] for r in tracker_rows] == [
        [name, *values] for name, values in tracker.rows
    ]
    moments = [li.text for li in section.find_all("ul", "moments")[0].find_all("li")]
    assert moments == key_moments(trace)
    assert section.find_all("details", "headers")

    data = page_data(doc)
    assert data["requests"] == [
        {
            "n": 1,
            "id": trace.id,
            "method": "GET",
            "path": "/wait",
            "status": 200,
            "outcome": "completed",
            "duration_ns": trace.duration_ns,
            "duration": data["requests"][0]["duration"],
            "detail": True,
        }
    ]
    assert data["states"]["blocked"] == "Blocked the loop"
    # One selectable request: nothing says some are missing.
    assert doc.by_id("req-missing").attrs.get("hidden") == ""
    assert not [n for n in doc.walk() if n.attrs.get("id") == "cap-note"]


def test_blocking_request_is_marked_in_its_lane_rows_and_moments(real: dict[str, Any]) -> None:
    block: Trace = real["block"]
    traces: list[Trace] = real["all"]
    doc = parse(to_html(traces))
    lanes = doc.by_id("timeline").find_all("div", "lane")
    assert [lane.attrs["title"] for lane in lanes] == [
        f"GET {t.path}" for t in sorted(traces, key=lambda t: t.start_ns)
    ]
    n = next(i for i, lane in enumerate(lanes, 1) if lane.attrs["title"] == "GET /block")
    lane = doc.by_id(f"lane-{n}")
    [blocked] = lane.find_all("div", "blocked")
    assert blocked.attrs["data-state"] == "blocked"
    assert "time.sleep(0.12)" in blocked.attrs["data-what"]
    assert lane.find_all("span", "lane-flag")
    # The segment points at the table's blocked row.
    row = doc.by_id(f"req-{n}-step-{blocked.attrs['data-step']}")
    assert "mark-blocked" in row.classes
    assert row.find_all("span", "tag")[0].text == "blocked the loop"
    assert "Block the event loop for " in row.text
    [moment] = doc.by_id(f"req-{n}").find_all("li", "bad")
    assert moment.text.startswith("Blocked the event loop for ")
    stat = next(s for s in doc.find_all("div", "stat") if s.text.endswith("blocked the loop"))
    assert stat.text == "1blocked the loop"
    assert "bad" in stat.classes
    # The request that slept meanwhile shows the loop's lag.
    wait_n = 1 + sorted(traces, key=lambda t: t.start_ns).index(real["concurrent_wait"])
    assert any(li.text.startswith("Loop lag") for li in doc.by_id(f"req-{wait_n}").find_all("li"))
    assert block.blocking()
    assert len(doc.find_all("section", "request")) == len(traces)


def test_report_references_nothing_on_the_network(real: dict[str, Any]) -> None:
    page = to_html(real["all"])
    doc = parse(page)
    for node in doc.walk():
        for name, value in node.attrs.items():
            if name in ("src", "href", "action", "srcset", "poster", "data", "formaction"):
                assert not re.search(r"(?i)^\s*(https?:|//)", value), (node.tag, name, value)
    assert not doc.find_all("link")
    assert not doc.find_all("img")
    assert not doc.find_all("iframe")
    scripts = doc.find_all("script")
    assert [s.attrs for s in scripts] == [
        {"type": "application/json", "id": "asgitrace-data"},
        {},
    ]
    [style] = doc.find_all("style")
    assert "@import" not in style.text
    assert "url(" not in style.text
    assert "url(" not in page
    assert "https://" not in scripts[1].text
    assert "http://" not in scripts[1].text
    assert "fetch(" not in scripts[1].text
    assert "XMLHttpRequest" not in scripts[1].text
    [csp] = [m for m in doc.find_all("meta") if m.attrs.get("http-equiv")]
    assert csp.attrs["http-equiv"] == "Content-Security-Policy"
    assert csp.attrs["content"].startswith("default-src 'none';")


def test_csp_allows_exactly_the_inline_script() -> None:
    doc = parse(to_html([simple_trace()]))
    script = doc.find_all("script")[1].text
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    [csp] = [m for m in doc.find_all("meta") if m.attrs.get("http-equiv")]
    assert f"script-src 'sha256-{digest}';" in csp.attrs["content"]
    assert "unsafe-inline'; script-src" in csp.attrs["content"]  # styles only
    assert "'unsafe-eval'" not in csp.attrs["content"]


def test_untrusted_text_cannot_inject_markup(real: dict[str, Any]) -> None:
    evil = f"/x?{HOSTILE}"
    hostile = synthetic(
        [
            _event(1, 0, "received", type="http", path=evil, method=f"GET{HOSTILE}"),
            _event(2, 5, "entered", function=f"f{HOSTILE}", file=f"{HOSTILE}.py", line=3),
            _event(
                3,
                10,
                "awaiting",
                function=f"f{HOSTILE}",
                file="a.py",
                line=4,
                target=f'sleep("{HOSTILE}")',
            ),
            _event(4, 10, "yielded"),
            _event(5, 2010, "resumed", waited_ns=2_000_000, lag_ns=0),
            _event(6, 2020, "returned", value=f"'</script>{HOSTILE}&amp;'"),
            _event(7, 2030, "sent", type="http.response.start", status=200),
            _event(8, 2040, "sent", type="http.response.body", body_bytes=3),
            _event(9, 2050, "completed", status=200),
        ],
        path=evil,
        method=f"GET{HOSTILE}",
        route=f"/r/{HOSTILE}",
        query=f"q={HOSTILE}",
        headers=[["x-evil", f'"><img src=x onerror=alert(1)>{HOSTILE}']],
        response_headers=[["content-type", f"text/html{HOSTILE}"]],
        id=f"id{HOSTILE}",
    )
    traces = [hostile, real["hostile"]]
    page = to_html(traces, title=f"t{HOSTILE}")
    assert HOSTILE not in page
    assert "<img" not in page
    assert "</script>" not in page.split('<script type="application/json"')[0]
    doc = parse(page)
    assert len(doc.find_all("script")) == 2
    assert not doc.find_all("img")
    assert not [
        (node.tag, name) for node in doc.walk() for name in node.attrs if name.startswith("on")
    ]
    # The text survives intact, as text.
    assert doc.find_all("title")[0].text == f"t{HOSTILE}"
    assert doc.by_id("lane-1").attrs["title"] == f"GET{HOSTILE} {evil}"
    section = doc.by_id("req-1")
    assert section.find_all("span", "path")[0].text == evil
    assert f"/r/{HOSTILE}" in section.text
    assert f"'</script>{HOSTILE}&amp;'" in section.text
    assert f'"><img src=x onerror=alert(1)>{HOSTILE}' in section.text
    assert doc.by_id("req-2").find_all("span", "path")[0].text == "/x/" + HOSTILE
    # The JSON block holds the same text without a single "<", ">" or "&".
    raw = doc.by_id("asgitrace-data").text
    assert not set(raw) & set("<>&")
    assert "\\u003c/script\\u003e" in raw
    data = page_data(doc)
    assert [r["path"] for r in data["requests"]] == [evil, "/x/" + HOSTILE]
    assert data["requests"][0]["id"] == f"id{HOSTILE}"


def test_json_block_escapes_line_separators() -> None:
    page = to_html([simple_trace("/a\u2028b\u2029c&d")])
    raw = parse(page).by_id("asgitrace-data").text
    assert "\u2028" not in raw
    assert "\u2029" not in raw
    assert "\\u2028" in raw
    assert "\\u0026" in raw
    assert page_data(parse(page))["requests"][0]["path"] == "/a\u2028b\u2029c&d"


# -- edge cases -----------------------------------------------------------------------------


def test_no_traces_gives_a_page_that_says_so() -> None:
    doc = parse(to_html([]))
    assert "No traces to show." in doc.text
    assert page_data(doc)["requests"] == []
    assert not doc.find_all("div", "lane")
    assert [s.text for s in doc.find_all("div", "stat")] == ["0requests"]


def test_a_single_trace_is_accepted_as_well_as_a_list() -> None:
    trace = simple_trace()
    assert to_html(trace) == to_html([trace])


def test_lanes_share_one_time_axis_in_order_of_arrival() -> None:
    late = simple_trace("/late", start_us=3000, duration_us=1000)
    early = simple_trace("/early", start_us=0, duration_us=1000)
    doc = parse(to_html([late, early]))
    lanes = doc.find_all("div", "lane")
    assert [lane.attrs["title"] for lane in lanes] == ["GET /early", "GET /late"]
    extents = [lane.find_all("div", "extent")[0].attrs["style"] for lane in lanes]
    assert extents == ["left:0%;width:25%", "left:75%;width:25%"]
    assert [lane.attrs["tabindex"] for lane in lanes] == ["0", "-1"]
    ticks = [t.text for t in doc.find_all("span", "tick")]
    assert ticks == ["0", "0.5 ms", "1 ms", "1.5 ms", "2 ms", "2.5 ms", "3 ms", "3.5 ms", "4 ms"]


def test_running_segment_at_arrival_names_the_arrival() -> None:
    doc = parse(to_html([simple_trace()]))
    segs = {seg.attrs["data-state"]: seg for seg in doc.find_all("div", "seg")}
    assert list(segs) == ["after", "running"]  # painted in this order: running on top
    seg = segs["running"]
    assert seg.attrs["data-step"] == "1"
    assert seg.attrs["data-what"] == "Request received by ASGI server (GET /s)"
    assert seg.attrs["data-at"] == "0 µs"
    assert seg.attrs["data-took"] == "990 µs"


def test_short_framework_wait_and_work_after_the_response() -> None:
    trace = synthetic(
        [
            _event(1, 0, "received", type="http", path="/bg", method="GET"),
            # A framework checkpoint (no function, under a millisecond): not in the table.
            _event(2, 10, "awaiting", target="checkpoint", via="anyio"),
            _event(3, 10, "yielded"),
            _event(4, 200, "resumed", waited_ns=190_000),
            _event(5, 300, "sent", type="http.response.start", status=200),
            _event(6, 310, "sent", type="http.response.body", body_bytes=2),
            _event(7, 5000, "completed", status=200),
        ],
        path="/bg",
    )
    doc = parse(to_html([trace]))
    segs = {s.attrs["data-state"]: s for s in doc.find_all("div", "seg")}
    assert set(segs) == {"running", "awaiting", "after"}
    assert segs["awaiting"].attrs["data-what"].startswith("Suspended inside the framework")
    assert segs["awaiting"].attrs["data-step"] == ""
    assert segs["after"].attrs["data-what"].startswith("ASGI server sends response")
    moments = doc.by_id("req-1").find_all("li", "warn")
    assert moments[0].text.endswith("the client did not wait for it.")


def test_wait_that_never_ended_is_the_last_row() -> None:
    trace = synthetic(
        [
            _event(1, 0, "received", type="http", path="/s", method="GET"),
            _event(2, 10, "awaiting", function="handler", target="event.wait()"),
            _event(3, 10, "yielded"),
            _event(4, 900, "cancelled"),
        ],
        status=None,
    )
    segs = {s.attrs["data-state"]: s for s in parse(to_html([trace])).find_all("div", "seg")}
    assert segs["awaiting"].attrs["data-what"] == "Await event.wait()"
    assert segs["awaiting"].attrs["data-step"] == "2"


def test_trace_without_rows_still_draws_its_lane() -> None:
    trace = synthetic([_event(1, 500, "completed", status=None)], status=None)
    doc = parse(to_html([trace]))
    [seg] = doc.find_all("div", "seg")
    assert seg.attrs["data-what"] == ""
    assert seg.attrs["data-step"] == ""
    assert not doc.by_id("req-1").find_all("tbody")[0].children


def test_many_segments_are_drawn_coarsely() -> None:
    events = [_event(1, 0, "received", type="http", path="/stream", method="GET")]
    seq = 2
    for i in range(300):
        t = 10 + i * 20
        events.append(_event(seq, t, "yielded"))
        events.append(_event(seq + 1, t + 10, "resumed", waited_ns=10_000))
        seq += 2
    events.append(_event(seq, 6100, "completed", status=200))
    trace = synthetic(events, path="/stream")
    lane = parse(to_html([trace])).by_id("lane-1")
    segs = lane.find_all("div", "seg")
    assert 0 < len(segs) <= 2000
    assert all(
        s.attrs["data-what"] == "Drawn coarsely: this request has 601 segments" for s in segs
    )
    assert {s.attrs["data-state"] for s in segs} == {"running", "awaiting"}


def test_websocket_and_status_classes() -> None:
    cases = [
        (simple_trace("/a", status=200), "ok", "200"),
        (simple_trace("/b", status=307), "info", "307"),
        (simple_trace("/c", status=404), "warn", "404"),
        (simple_trace("/d", status=503), "bad", "503"),
        (
            synthetic([_event(1, 10, "failed", exception="ValueError")], status=None, path="/e"),
            "bad",
            "failed",
        ),
        (
            synthetic([_event(1, 10, "cancelled")], status=None, path="/f"),
            "",
            "cancelled",
        ),
        (simple_trace("/ws", type="websocket", method=None, status=None), "", "completed"),
    ]
    for trace, cls, text in cases:
        doc = parse(to_html([trace]))
        pill = doc.by_id("lane-1").find_all("span", "pill")[0]
        assert pill.text == text
        assert pill.classes == ({"pill", cls} if cls else {"pill"})
    doc = parse(to_html([cases[-1][0]]))
    assert doc.by_id("lane-1").find_all("span", "method")[0].text == "WEBSOCKET"
    failed = parse(to_html([cases[4][0]])).by_id("req-1")
    assert "failed (ValueError)" in failed.find_all("dl", "meta")[0].text


def test_derived_times_are_marked_and_explained() -> None:
    trace = synthetic(
        [
            _event(1, 0, "received", type="http", path="/s", method="GET"),
            _event(2, 50, "entered", function="handler", derived=True),
            _event(3, 100, "completed", status=200),
        ]
    )
    section = parse(to_html([trace])).by_id("req-1")
    assert section.by_id("req-1-step-2").find_all("td")[1].text == "≈50 µs"
    assert "≈ marks a time derived" in section.text


def test_no_wall_clock_start_and_no_headers_leave_those_out() -> None:
    trace = simple_trace(start=0.0)
    doc = parse(to_html([trace]))
    assert not any("first arrival" in s.text for s in doc.find_all("div", "stat"))
    assert "Started" not in doc.by_id("req-1").find_all("dl", "meta")[0].text
    assert not doc.find_all("details")


def test_dropped_events_are_reported() -> None:
    doc = parse(to_html([simple_trace(dropped=7)]))
    assert "Dropped7 (max_events)" in doc.by_id("req-1").find_all("dl", "meta")[0].text


def test_details_are_capped_keeping_notable_then_slowest_requests() -> None:
    traces = [simple_trace(f"/r{i}", start_us=i * 2000, duration_us=100 + i) for i in range(6)]
    traces[1] = simple_trace("/r1", start_us=2000, status=500)
    traces[2] = synthetic(
        [_event(1, 10, "failed", exception="E")], status=None, path="/r2", start_us=4000
    )
    doc = parse(to_html(traces, max_details=3))
    shown = [s.attrs["id"] for s in doc.find_all("section", "request")]
    # /r1 (500) and /r2 (failed) are notable; /r5 is the slowest of the rest.
    assert shown == ["req-2", "req-3", "req-6"]
    assert len(doc.find_all("div", "lane")) == 6
    assert "Tables are included for 3 of 6 requests" in doc.by_id("cap-note").text
    assert "the tables of 3 of its 6 requests" in doc.by_id("req-missing").text
    assert [r["detail"] for r in page_data(doc)["requests"]] == [
        False,
        True,
        True,
        False,
        False,
        True,
    ]


def test_default_cap_is_two_hundred_requests() -> None:
    traces = [simple_trace(f"/r{i}", start_us=i * 100, duration_us=50) for i in range(205)]
    doc = parse(to_html(traces))
    assert MAX_DETAILS == 200
    assert len(doc.find_all("section", "request")) == 200
    assert len(doc.find_all("div", "lane")) == 205
    assert "(the limit is 200)" in doc.by_id("cap-note").text


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (3, ["0", "1 ns", "2 ns", "3 ns"]),
        (60_000, ["0", "10 µs", "20 µs", "30 µs", "40 µs", "50 µs", "60 µs"]),
        (25_000_000, ["0", "5 ms", "10 ms", "15 ms", "20 ms", "25 ms"]),
        (2_500_000_000, ["0", "0.5 s", "1 s", "1.5 s", "2 s", "2.5 s"]),
    ],
)
def test_time_axis_ticks_are_round(span: int, expected: list[str]) -> None:
    assert [label for _, label in _ticks(span)] == expected


# -- files ----------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_write_html_creates_an_owner_only_file(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    write_html([simple_trace()], path, title="T")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8") == to_html([simple_trace()], title="T")
    assert os.listdir(tmp_path) == ["report.html"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_write_html_replaces_a_readable_file_with_an_owner_only_one(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old")
    path.chmod(0o644)
    write_html(simple_trace(), str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_write_html_leaves_no_temporary_file_when_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.html"
    path.write_text("old")

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_html([simple_trace()], path)
    assert os.listdir(tmp_path) == ["report.html"]
    assert path.read_text() == "old"
