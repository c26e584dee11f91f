"""JSON, JSON lines and the JSON-lines sink (`asgitrace.exporters`)."""

from __future__ import annotations

import io
import json
import logging
import stat
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from asgitrace import Trace, TraceMiddleware, Tracer, exporters
from asgitrace.export import _offload
from asgitrace.exporters import JsonlSink, MalformedLine
from asgitrace.views._render import render_trace


async def run_requests(make_app: Any, *paths: str, **options: Any) -> list[Trace]:
    """Serve *paths* one after another through a traced app; return the traces in order."""
    app = make_app()
    tracer = Tracer(blocking_threshold=make_app.blocking_threshold, **options)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in paths:
            await client.get(path, headers={"Authorization": "Bearer secret"})
    return tracer.traces


def rendered(trace: Trace) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None, record=True)
    console.print(render_trace(trace))
    return console.export_text()


def hand_built(
    trace_id: str = "t1",
    *,
    start: float = 1_700_000_000.0,
    start_ns: int = 5_000_000,
    path: str = "/wait",
) -> Trace:
    task = {"id": 1, "name": "Task-1"}
    return Trace.from_dict(
        {
            "schema_version": 1,
            "id": trace_id,
            "type": "http",
            "method": "GET",
            "path": path,
            "route": path,
            "query": "",
            "headers": [["host", "test"]],
            "response_headers": [],
            "status": 200,
            "start": start,
            "start_ns": start_ns,
            "end_ns": start_ns + 3_000,
            "dropped": 0,
            "events": [
                {
                    "seq": 1,
                    "t_ns": start_ns + 1_000,
                    "kind": "received",
                    "task": task,
                    "fields": {"type": "http", "path": path, "method": "GET"},
                },
                {
                    "seq": 2,
                    "t_ns": start_ns + 3_000,
                    "kind": "completed",
                    "task": task,
                    "fields": {"status": 200},
                },
            ],
        }
    )


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def sinks() -> Iterator[list[JsonlSink]]:
    """Sinks made by a test, closed even when it fails."""
    made: list[JsonlSink] = []
    yield made
    for sink in made:
        sink.close()


# -- JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/wait", "/block", "/gather", "/boom", "/crash", "/items/7?token=abc&q=1"]
)
async def test_json_round_trip_keeps_the_dict_and_the_rendered_table(
    path: str, make_app: Any
) -> None:
    [trace] = await run_requests(make_app, path)
    loaded = exporters.load_json(exporters.to_json(trace))
    assert loaded.to_dict() == trace.to_dict()
    assert rendered(loaded) == rendered(trace)
    pretty = exporters.load_json(exporters.to_json(trace, indent=2))
    assert pretty.to_dict() == trace.to_dict()


async def test_exported_json_carries_what_the_schema_page_documents(make_app: Any) -> None:
    [trace] = await run_requests(make_app, "/items/7?token=abc&q=1")
    data = json.loads(exporters.to_json(trace))
    assert next(iter(data)) == "schema_version"
    assert data["schema_version"] == 1
    assert data["route"] == "/items/{item_id}"
    assert data["query"] == "token=[redacted]&q=1"
    assert ["authorization", "[redacted]"] in data["headers"]
    assert data["duration_ns"] == data["end_ns"] - data["start_ns"]
    assert data["outcome"] == "completed"
    assert {e["kind"] for e in data["events"]} >= {"received", "awaiting", "sent", "completed"}
    assert all(set(e) == {"seq", "t_ns", "kind", "task", "fields"} for e in data["events"])
    assert exporters.to_dict(trace) == trace.to_dict()


def test_to_json_is_one_ascii_line_unless_indented() -> None:
    trace = hand_built(path="/café\nline")
    text = exporters.to_json(trace)
    assert "\n" not in text
    assert text.isascii()
    assert exporters.load_json(text).path == "/café\nline"
    assert exporters.load_json(text.encode()).to_dict() == trace.to_dict()
    assert "\n  " in exporters.to_json(trace, indent=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "a JSON list"),
        ('{"schema_version": 2}', "schema_version 2"),
        ('{"schema_version": 1, "id": "x"}', "not a trace dictionary"),
    ],
)
def test_load_json_rejects_what_is_not_a_trace(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        exporters.load_json(text)


def test_load_json_rejects_events_with_broken_fields() -> None:
    data = hand_built().to_dict()
    data["events"][0]["fields"] = 5
    with pytest.raises(ValueError, match="not a trace dictionary"):
        exporters.load_json(json.dumps(data))


# -- JSON lines ---------------------------------------------------------------------------


async def test_write_jsonl_then_read_jsonl_gives_the_same_traces(
    tmp_path: Path, make_app: Any
) -> None:
    traces = await run_requests(make_app, "/wait", "/gather", "/crash")
    path = tmp_path / "traces.jsonl"
    assert exporters.write_jsonl(traces, path) == 3
    assert mode_of(path) == 0o600
    assert len(path.read_text().splitlines()) == 3
    loaded = exporters.read_jsonl(path)
    assert [t.to_dict() for t in loaded] == [t.to_dict() for t in traces]
    assert [rendered(t) for t in loaded] == [rendered(t) for t in traces]


def test_write_jsonl_replaces_or_appends(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    exporters.write_jsonl([hand_built("a")], path)
    exporters.write_jsonl([hand_built("b")], path)
    assert [t.id for t in exporters.read_jsonl(path)] == ["b"]
    exporters.write_jsonl([hand_built("c", start=1_700_000_001.0)], str(path), append=True)
    assert [t.id for t in exporters.read_jsonl(path)] == ["b", "c"]


def test_an_existing_file_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text("")
    path.chmod(0o640)
    exporters.write_jsonl([hand_built()], path)
    assert mode_of(path) == 0o640


def write_lines(path: Path, *lines: str | bytes) -> Path:
    with path.open("wb") as file:
        for line in lines:
            file.write(line if isinstance(line, bytes) else line.encode())
            file.write(b"\n")
    return path


def test_read_jsonl_reports_each_malformed_line_with_its_number(tmp_path: Path) -> None:
    good = exporters.to_json(hand_built("good"))
    path = write_lines(
        tmp_path / "mixed.jsonl",
        good,
        "",
        "{truncated",
        '{"schema_version": 99}',
        b"\xff\xfe",
        "   ",
        good[: len(good) // 2],
    )
    problems: list[MalformedLine] = []
    traces = exporters.read_jsonl(path, on_error=problems.append)
    assert [t.id for t in traces] == ["good"]
    assert [(p.path, p.line) for p in problems] == [
        (str(path), 3),
        (str(path), 4),
        (str(path), 5),
        (str(path), 7),
    ]
    assert "schema_version 99" in problems[1].error
    assert str(problems[0]).startswith(f"{path}:3: not JSON")


def test_read_jsonl_logs_malformed_lines_by_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_lines(tmp_path / "bad.jsonl", exporters.to_json(hand_built()), "oops")
    with caplog.at_level(logging.WARNING, logger="asgitrace"):
        traces = exporters.read_jsonl(path)
    assert len(traces) == 1
    [record] = caplog.records
    assert f"{path}:2: not JSON" in record.getMessage()


def test_read_jsonl_strict_raises_naming_file_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", exporters.to_json(hand_built()), "[]")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not a trace: a JSON list"):
        exporters.read_jsonl(path, strict=True)


def test_read_jsonl_needs_a_path() -> None:
    with pytest.raises(TypeError, match="at least one path"):
        exporters.read_jsonl()


def test_read_jsonl_merges_files_by_start_time_without_duplicates(tmp_path: Path) -> None:
    t0 = 1_700_000_000.0
    worker1 = [hand_built("a", start=t0 + 0.1), hand_built("c", start=t0 + 0.3)]
    worker2 = [hand_built("b", start=t0 + 0.2), hand_built("d", start=t0 + 0.05)]
    one, two = tmp_path / "w1.jsonl", tmp_path / "w2.jsonl"
    exporters.write_jsonl(worker1, one)
    exporters.write_jsonl(worker2, two)
    exporters.write_jsonl([hand_built("a", start=t0 + 0.1)], two, append=True)
    merged = exporters.read_jsonl(one, two, one)
    assert [t.id for t in merged] == ["d", "a", "b", "c"]


# -- JsonlSink ----------------------------------------------------------------------------


async def test_sink_as_on_trace_writes_every_trace(tmp_path: Path, make_app: Any) -> None:
    path = tmp_path / "sink.jsonl"
    with JsonlSink(path) as sink:
        traces = await run_requests(make_app, "/wait", "/gather", "/block", on_trace=sink)
    assert sink.closed
    assert (sink.written, sink.dropped) == (3, 0)
    assert mode_of(path) == 0o600
    loaded = exporters.read_jsonl(path, strict=True)
    assert [t.to_dict() for t in loaded] == [t.to_dict() for t in traces]


def test_sink_appends_to_an_existing_file(tmp_path: Path, sinks: list[JsonlSink]) -> None:
    path = tmp_path / "sink.jsonl"
    exporters.write_jsonl([hand_built("old")], path)
    sink = JsonlSink(str(path))
    sinks.append(sink)
    sink(hand_built("new", start=1_700_000_001.0))
    assert sink.flush(timeout=10)
    assert sink.written == 1
    assert [t.id for t in exporters.read_jsonl(path)] == ["old", "new"]


def test_sink_drops_and_counts_when_its_queue_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sinks: list[JsonlSink]
) -> None:
    writing = threading.Event()
    release = threading.Event()
    real = exporters.to_json

    def slow_to_json(trace: Trace, *, indent: int | None = None) -> str:
        writing.set()
        assert release.wait(10)
        return real(trace, indent=indent)

    monkeypatch.setattr("asgitrace.export._sink.to_json", slow_to_json)
    sink = JsonlSink(tmp_path / "sink.jsonl", max_queue=1)
    sinks.append(sink)
    sink(hand_built("1"))
    assert writing.wait(10)  # the writer holds trace 1; the queue is empty again
    sink(hand_built("2"))  # fills the queue
    # Only this test releases the writer; were a full queue to make `sink` wait for room,
    # the safety timer would release it (after 10 s) and the check below would fail.
    safety = threading.Timer(10, release.set)
    safety.start()
    sink(hand_built("3"))
    sink(hand_built("4"))
    assert not release.is_set()  # returned with the writer still held: never blocks
    safety.cancel()
    assert sink.dropped == 2
    release.set()
    sink.close()
    assert (sink.written, sink.dropped) == (2, 2)
    assert [t.id for t in exporters.read_jsonl(sink.path)] == ["1", "2"]


def test_sink_after_close_drops_and_close_is_idempotent(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "sink.jsonl")
    sink(hand_built("1"))
    sink.close()
    sink.close()
    sink(hand_built("2"))
    assert (sink.written, sink.dropped) == (1, 1)
    assert sink.flush() is True
    assert repr(sink) == f"<JsonlSink {sink.path!r} written=1 dropped=1>"


def test_sink_close_counts_traces_that_raced_in_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = JsonlSink(tmp_path / "sink.jsonl")
    flush_marker = _offload._Flush()

    class Racing(deque[Any]):
        """As if another thread queued a trace and a flush just after close() queued
        its stop."""

        def append(self, item: Any) -> None:
            super().append(item)
            if item is None:
                super().append(hand_built("late"))
                super().append(flush_marker)

    monkeypatch.setattr(sink._worker, "_items", Racing(sink._worker._items))
    sink.close()
    assert sink.dropped == 1
    assert flush_marker.done.is_set()


def test_sink_survives_a_trace_it_cannot_serialise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = exporters.to_json

    def picky(trace: Trace, *, indent: int | None = None) -> str:
        if trace.id == "bad":
            raise RuntimeError("cannot")
        return real(trace, indent=indent)

    monkeypatch.setattr("asgitrace.export._sink.to_json", picky)
    with caplog.at_level(logging.ERROR, logger="asgitrace"), JsonlSink(tmp_path / "s") as sink:
        sink(hand_built("bad"))
        sink(hand_built("good"))
    assert (sink.written, sink.dropped) == (1, 1)
    assert "turning a trace into JSON" in caplog.text


class BrokenFile(io.StringIO):
    def __init__(self, fail_on: str) -> None:
        super().__init__()
        self.fail_on = fail_on

    def write(self, text: str) -> int:
        if self.fail_on == "write":
            raise OSError(28, "No space left on device")
        return super().write(text)

    def flush(self) -> None:
        if self.fail_on == "flush":
            raise OSError(5, "Input/output error")

    def close(self) -> None:
        closed = self.closed
        super().close()
        if self.fail_on == "close" and not closed:  # only once: not again from __del__
            raise OSError(5, "Input/output error")


@pytest.mark.parametrize("fail_on", ["write", "flush", "close"])
def test_sink_stops_writing_after_a_file_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fail_on: str
) -> None:
    sink = JsonlSink(tmp_path / "sink.jsonl")
    sink._file.close()
    sink._file = BrokenFile(fail_on)
    with caplog.at_level(logging.ERROR, logger="asgitrace"):
        sink(hand_built("1"))
        assert sink.flush(timeout=10)
        sink(hand_built("2"))
        sink.close()
    assert "JsonlSink writing" in caplog.text
    if fail_on == "write":
        assert (sink.written, sink.dropped) == (0, 2)
    elif fail_on == "flush":
        assert (sink.written, sink.dropped) == (1, 1)
    else:
        assert (sink.written, sink.dropped) == (2, 0)


def test_sink_rejects_an_empty_queue() -> None:
    with pytest.raises(ValueError, match="max_queue must be >= 1"):
        JsonlSink("unused.jsonl", max_queue=0)


def test_sink_registers_its_close_at_exit_and_unregisters_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered: list[Callable[[], None]] = []
    monkeypatch.setattr("atexit.register", registered.append)
    monkeypatch.setattr("atexit.unregister", registered.remove)
    sink = JsonlSink(tmp_path / "sink.jsonl")
    assert registered == [sink._worker.close]
    sink.close()
    assert registered == []


SINK_AT_EXIT = """
import sys
from asgitrace import Trace
from asgitrace.exporters import JsonlSink

data = {data}
sink = JsonlSink(sys.argv[1])
for number in range(200):
    sink(Trace.from_dict(dict(data, id=str(number))))
# no close(): the interpreter exits with traces still queued
"""


def test_sink_writes_what_is_queued_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "exit.jsonl"
    script = SINK_AT_EXIT.format(data=repr(hand_built().to_dict()))
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    assert [t.id for t in exporters.read_jsonl(path, strict=True)] == [str(n) for n in range(200)]
    assert mode_of(path) == 0o600
