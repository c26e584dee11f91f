"""The ``asgitrace`` command line (also ``python -m asgitrace``)."""

from __future__ import annotations

import asyncio
import inspect
import io
import os
import queue
import runpy
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from rich.text import Text

import asgitrace
import asgitrace.capture
from asgitrace import cli, exporters
from asgitrace.cli import _commands as cli_commands, _output as cli_output, _serve as cli_serve
from asgitrace.cli._app import load_app
from asgitrace.cli._demo import blocking_app, reference_app
from asgitrace.cli._run import RequestSpec
from asgitrace.views._stats import TraceStats

# What `--version` prints: the version, and which stepper the capture runs.
CAPTURE = "compiled" if asgitrace.capture.COMPILED else "pure Python"
VERSION = f"asgitrace {asgitrace.__version__} (capture: {CAPTURE})"


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich reads COLUMNS: a wide console keeps each sentence on one line."""
    monkeypatch.setenv("COLUMNS", "200")


def test_demo_traces_the_reference_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["demo", "--delay", "0.01"])

    out, err = capsys.readouterr()
    assert status == 0
    assert out.startswith(
        "asgitrace demo: GET /wait (await asyncio.sleep(0.01)) x1 through uvicorn on 127.0.0.1"
    )
    assert "GET /wait → 200" in out
    assert "overlapped" not in out  # one request: no timeline, no comparison
    assert err == ""


def test_demo_with_concurrency_compares_the_overlapping_requests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = cli.main(["demo", "--delay", "0.01", "-c", "2"])

    out = capsys.readouterr().out
    assert status == 0
    assert "x2 through uvicorn" in out
    assert (
        "The requests overlapped: while one awaited asyncio.sleep, the loop ran the others. "
        "Compare: asgitrace demo --blocking -c 2"
    ) in out


def test_blocking_demo_explains_that_requests_ran_one_after_another(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = cli.main(["demo", "--blocking", "--delay", "0.01", "--concurrency", "2"])

    out = capsys.readouterr().out
    assert status == 0
    assert "GET /wait (time.sleep(0.01)) x2" in out
    assert (
        "The requests ran one after another: time.sleep held the event loop, so nothing "
        "else could run. Compare: asgitrace demo -c 2"
    ) in out


def test_no_command_prints_help_and_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main([])

    assert status == 2
    assert capsys.readouterr().out.startswith("usage: asgitrace")


@pytest.mark.parametrize("concurrency", ["0", "-3"])
def test_concurrency_below_one_is_a_one_line_error(
    concurrency: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["demo", "-c", concurrency])

    out, err = capsys.readouterr()
    assert status == 2
    assert err == "asgitrace: error: --concurrency must be at least 1\n"
    assert out == ""


def test_debug_shows_the_error_itself() -> None:
    with pytest.raises(cli.CliError, match="--concurrency must be at least 1"):
        cli.main(["--debug", "demo", "-c", "0"])


def test_unexpected_error_is_reported_in_one_line_with_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken(*args: Any) -> list[Any]:
        raise ConnectionError("server vanished")

    monkeypatch.setattr(cli_commands, "_run_demo", broken)

    status = cli.main(["demo", "--delay", "0.01"])

    err = capsys.readouterr().err
    assert status == 1
    assert err == (
        "asgitrace: error: ConnectionError: server vanished (run with --debug for details)\n"
    )


def test_unexpected_error_with_debug_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any) -> list[Any]:
        raise ConnectionError("server vanished")

    monkeypatch.setattr(cli_commands, "_run_demo", broken)

    with pytest.raises(ConnectionError, match="server vanished"):
        cli.main(["--debug", "demo"])


@pytest.mark.parametrize("argv", [["demo", "--delay", "soon"], ["frobnicate"]])
def test_malformed_arguments_exit_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(argv)

    assert raised.value.code == 2
    assert "usage: asgitrace" in capsys.readouterr().err


@pytest.mark.parametrize(("compiled", "says"), [(True, "compiled"), (False, "pure Python")])
def test_version_line_says_which_capture_runs(
    compiled: bool, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgitrace.cli import _parser

    monkeypatch.setattr(_parser, "COMPILED", compiled)
    assert _parser.version_line() == f"asgitrace {asgitrace.__version__} (capture: {says})"


def test_version_option_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["--version"])

    assert raised.value.code == 0
    assert capsys.readouterr().out == f"{VERSION}\n"


@pytest.mark.parametrize("package", ["asgitrace", "asgitrace.cli"])
def test_python_dash_m_runs_the_command_line(
    package: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["asgitrace", "--version"])
    folder = Path(asgitrace.__file__).parent.joinpath(*package.split(".")[1:])

    with pytest.raises(SystemExit) as raised:
        # run_path: pytest's assertion-rewriting import hook cannot serve run_module here.
        runpy.run_path(str(folder / "__main__.py"), run_name=f"{package}.__main__")

    assert raised.value.code == 0
    assert capsys.readouterr().out == f"{VERSION}\n"


def test_python_dash_m_version_in_a_fresh_interpreter() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asgitrace", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (done.returncode, done.stdout) == (0, f"{VERSION}\n")


@pytest.mark.parametrize(
    ("factory", "line"),
    [(reference_app, "await asyncio.sleep(1)"), (blocking_app, "time.sleep(1)")],
)
def test_demo_apps_quote_the_tutorial_line_by_default(factory: Any, line: str) -> None:
    (route,) = [r for r in factory().routes if getattr(r, "path", None) == "/wait"]

    assert line in inspect.getsource(route.endpoint)


async def _two_quick_traces(blocking: bool, delay: float, concurrency: int) -> list[Any]:
    """Stands in for the server round trip: two traced requests to a hand-written app."""
    tracer = asgitrace.Tracer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    traced = asgitrace.instrument(app, tracer=tracer)
    for _ in range(concurrency):
        await traced({"type": "http", "method": "GET", "path": "/wait"}, receive, send)
    return tracer.traces


def test_demo_output_for_one_request_has_no_timeline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_commands, "_run_demo", _two_quick_traces)

    assert cli.main(["demo"]) == 0

    out = capsys.readouterr().out
    assert "GET /wait → 200" in out
    assert "Timeline" not in out


@pytest.mark.parametrize(
    ("flags", "sentence"),
    [
        ([], "The requests overlapped"),
        (["--blocking"], "The requests ran one after another"),
    ],
)
def test_demo_output_for_several_requests_names_what_happened(
    flags: list[str],
    sentence: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The printing half of the demo, without the server (fast, and fully measured)."""
    monkeypatch.setattr(cli_commands, "_run_demo", _two_quick_traces)

    status = cli.main(["demo", *flags, "-c", "2"])

    out = capsys.readouterr().out
    assert status == 0
    assert "GET /wait → 200" in out
    assert sentence in out


# -- a user's own app -------------------------------------------------------------------

USER_APP = '''
"""A user's app, as `asgitrace trace` and `asgitrace serve` find it."""

import asyncio
import contextlib
import time

from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

app = FastAPI()


@app.get("/wait")
async def wait_endpoint() -> dict[str, str]:
    await asyncio.sleep(0.01)
    return {"message": "Done waiting"}


@app.get("/block")
async def block_endpoint() -> dict[str, str]:
    time.sleep(0.03)  # BLOCKS
    return {"message": "Done blocking"}


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


@app.post("/echo")
async def echo(request: Request) -> dict[str, object]:
    body = (await request.body()).decode()
    return {"body": body, "x_test": request.headers.get("x-test")}


@app.get("/boom")
async def boom() -> None:
    raise ValueError("boom")


@app.get("/slow")
async def slow() -> dict[str, str]:
    await asyncio.sleep(0.3)
    return {}


@app.websocket("/ws")
async def echo_socket(websocket) -> None:
    await websocket.accept()
    await websocket.close()


def create_app() -> FastAPI:
    return app


def broken_factory() -> FastAPI:
    raise RuntimeError("no database")


async def plain_function() -> None:
    return None


settings = {"debug": True}


async def greet(request):
    return JSONResponse({"greeting": request.state.greeting})


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from the lifespan"}


stateful = Starlette(routes=[Route("/greet", greet)], lifespan=lifespan)


@contextlib.asynccontextmanager
async def failing_lifespan(app):
    raise RuntimeError("database unreachable")
    yield


failing = Starlette(routes=[Route("/greet", greet)], lifespan=failing_lifespan)


async def raw(scope, receive, send):
    """A bare ASGI app that does not speak the lifespan protocol."""
    if scope["type"] != "http":
        raise RuntimeError("lifespan is not supported")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


from starlette.middleware.gzip import GZipMiddleware

from asgitrace import TraceMiddleware, Tracer, instrument

own_tracer = Tracer(blocking_threshold=0.02)
already = FastAPI()


@already.get("/block")
async def already_block() -> dict[str, str]:
    time.sleep(0.03)  # ALREADY BLOCKS
    return {}


already.add_middleware(TraceMiddleware, tracer=own_tracer)
already.add_middleware(GZipMiddleware)  # listed before it: the search walks past
wrapped = instrument(raw, tracer=own_tracer)
'''
BLOCK_LINE = next(n for n, line in enumerate(USER_APP.splitlines(), 1) if "# BLOCKS" in line)


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A folder holding the user's `cliapp.py` (and two modules that fail to import)."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "cliapp.py").write_text(USER_APP)
    (folder / "brokenapp.py").write_text('raise RuntimeError("DATABASE_URL is not set")\n')
    (folder / "depapp.py").write_text("import not_installed_dependency_xyz  # noqa\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_app puts the folder first
    names = ("cliapp", "brokenapp", "depapp")
    for name in names:
        sys.modules.pop(name, None)
    yield str(folder)
    for name in names:
        sys.modules.pop(name, None)


def trace(app_dir: str, *argv: str) -> int:
    """``asgitrace trace cliapp:APP ...`` in-process (the fast server), from *app_dir*."""
    return cli.main(["trace", "--app-dir", app_dir, "--server", "inprocess", *argv])


class TestTrace:
    def test_one_request_prints_the_execution_table_tracker_and_key_moments(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status = trace(app_dir, "cliapp:app", "/wait")

        out, err = capsys.readouterr()
        assert status == 0
        assert "Execution table · GET /wait → 200" in out
        assert "Await asyncio.sleep(0.01)" in out
        assert "Variable tracker" in out
        assert "Key moments" in out
        assert "Summary" not in out  # one request: no summary, no timeline
        assert "Timeline" not in out
        assert err == ""

    def test_a_real_uvicorn_server_on_loopback_is_the_default(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status = cli.main(["trace", "--app-dir", app_dir, "cliapp:app", "/items/7"])

        out = capsys.readouterr().out
        assert status == 0
        assert "Execution table · GET /items/7 (route /items/{item_id}) → 200" in out

    def test_a_few_requests_add_the_timeline_and_a_summary_naming_the_blocking_line(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status = trace(
            app_dir, "cliapp:app", "/wait", "/block", "-c", "2", "--blocking-threshold", "0.02"
        )

        out = capsys.readouterr().out
        assert status == 0
        assert out.count("Execution table · ") == 2
        assert "Timeline" in out
        assert "Summary · 2 requests in " in out
        assert f"cliapp.py:{BLOCK_LINE}   time.sleep(0.03)" in out
        assert f"/project/cliapp.py:{BLOCK_LINE}" in out  # "blocked 30.1 ms at ..." (slowest)

    def test_many_requests_show_a_summary_and_only_the_slowest_in_full(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status = trace(
            app_dir,
            "cliapp:app",
            "/items/1",
            "/block",
            "-n",
            "8",
            "-c",
            "4",
            "--slowest",
            "2",
            "--blocking-threshold",
            "0.02",
        )

        out, err = capsys.readouterr()
        assert status == 0
        assert "Summary · 8 requests in " in out
        assert "status 200 (8)" in out
        assert "   p90 " in out
        assert "GET /items/{item_id}" in out  # the routes table groups by route template
        assert "The slowest 2 requests, in full" in out
        assert out.count("Execution table · ") == 2
        assert "Timeline" not in out
        assert err == ""  # the progress bar draws only on a terminal

    def test_a_terminal_sees_a_progress_bar_on_stderr(
        self,
        app_dir: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        def terminal() -> Console:
            return Console(stderr=True, force_terminal=True, theme=asgitrace.THEME)

        monkeypatch.setattr(cli_output, "stderr", terminal)

        assert trace(app_dir, "cliapp:app", "/items/1", "-n", "3") == 0

        err = capsys.readouterr().err
        assert "tracing" in err
        assert "3/3" in err

    def test_no_blocking_is_said_with_the_threshold(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["cliapp:app", "/items/1", "/items/2", "--blocking-threshold", "5"]

        assert trace(app_dir, *argv) == 0

        assert "No step blocked the event loop for 5000 ms or more." in capsys.readouterr().out

    def test_method_body_and_headers_are_sent(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["cliapp:app", "/echo", "-d", '{"name": "spam"}', "-H", "X-Test: yes"]
        status = trace(app_dir, *argv, "--format", "json")

        (line,) = capsys.readouterr().out.splitlines()
        recorded = exporters.load_json(line)
        assert status == 0
        assert (recorded.method, recorded.status) == ("POST", 200)
        assert ("x-test", "yes") in recorded.headers
        assert ("content-type", "application/json") in recorded.headers

    def test_markdown_is_the_explain_page(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert trace(app_dir, "cliapp:app", "/wait", "--format", "markdown") == 0

        out = capsys.readouterr().out
        assert out.startswith("# What happened during GET /wait\n")
        assert "| Step |" in out

    def test_markdown_of_many_requests_starts_with_the_summary(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status = trace(app_dir, "cliapp:app", "/items/1", "-n", "6", "--format", "markdown")

        out = capsys.readouterr().out
        assert status == 0
        assert out.startswith("# Summary\n\n6 requests in ")
        assert out.count("# What happened during GET /items/1") == 3
        assert "\n---\n" in out

    def test_markdown_of_a_few_requests_ends_with_the_summary(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status = trace(app_dir, "cliapp:app", "/items/1", "/wait", "--format", "markdown")

        out = capsys.readouterr().out
        assert status == 0
        assert out.startswith("# What happened during GET /items/1")
        assert out.index("# What happened during GET /wait") < out.index("# Summary")

    def test_timeline_format_and_the_summary_beside_it_on_stderr(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status = trace(app_dir, "cliapp:app", "/wait", "/items/1", "--format", "timeline")

        out, err = capsys.readouterr()
        assert status == 0
        assert out.startswith("Timeline\n1. GET /wait")
        assert "Execution table" not in out
        assert err.startswith("Summary · 2 requests")

    def test_json_to_a_file_is_json_lines_readable_by_the_owner_only(
        self, app_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        target = tmp_path / "traces.jsonl"

        status = trace(
            app_dir, "cliapp:app", "/wait", "/items/2", "--format", "json", "-o", str(target)
        )

        out, err = capsys.readouterr()
        assert status == 0
        assert out == ""
        assert err.startswith(f"Wrote 2 traces to {target} (json).\nSummary · 2 requests")
        assert [t.path for t in exporters.read_jsonl(target)] == ["/wait", "/items/2"]
        assert target.stat().st_mode & 0o777 == 0o600

    def test_tables_to_a_file_use_the_wide_layout_without_colour(
        self, app_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        target = tmp_path / "trace.txt"

        assert trace(app_dir, "cliapp:app", "/wait", "-o", str(target), "--ascii") == 0

        text = target.read_text(encoding="utf-8")
        assert "State Before " in text  # 120 columns: the tutorial's six
        assert "\x1b[" not in text
        assert capsys.readouterr().err == f"Wrote 1 trace to {target} (table).\n"

    def test_html_is_one_self_contained_page(
        self, app_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        target = tmp_path / "report.html"

        assert trace(app_dir, "cliapp:app", "/wait", "--format", "html", "-o", str(target)) == 0

        page = target.read_text(encoding="utf-8")
        assert page.lstrip().lower().startswith("<!doctype html>")
        assert "/wait" in page

    def test_an_app_exception_is_traced_as_a_failed_request(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert trace(app_dir, "cliapp:app", "/boom") == 0

        out = capsys.readouterr().out
        assert "Execution table · GET /boom → 500" in out
        assert "failed" in out

    def test_a_factory_is_called_with_factory(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert trace(app_dir, "cliapp:create_app", "--factory", "/items/3") == 0

        assert "GET /items/3 (route /items/{item_id}) → 200" in capsys.readouterr().out

    @pytest.mark.parametrize("server", ["inprocess", "uvicorn"])
    def test_the_lifespan_runs_and_its_state_reaches_the_requests(
        self, server: str, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["trace", "--app-dir", app_dir, "--server", server, "cliapp:stateful", "/greet"]

        assert cli.main([*argv, "--format", "json"]) == 0

        assert exporters.load_json(capsys.readouterr().out).status == 200

    def test_an_app_without_lifespan_support_is_traced_all_the_same(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert trace(app_dir, "cliapp:raw", "/", "--format", "json") == 0

        assert exporters.load_json(capsys.readouterr().out).status == 204

    def test_a_failing_lifespan_startup_is_one_line(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert trace(app_dir, "cliapp:failing", "/greet") == 2

        err = capsys.readouterr().err
        assert err == (
            "asgitrace: error: the app's lifespan startup failed: "
            "RuntimeError: database unreachable\n"
        )

    def test_a_failing_lifespan_under_uvicorn_is_reported(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status = cli.main(["trace", "--app-dir", app_dir, "cliapp:failing", "/greet"])

        err = capsys.readouterr().err
        assert status == 2
        assert err.splitlines()[-1] == (
            "asgitrace: error: the app failed to start: its lifespan startup raised: "
            "RuntimeError: database unreachable"
        )

    @pytest.mark.parametrize("server", ["inprocess", "uvicorn"])
    def test_asgitrace_s_own_client_does_not_log_to_the_app_s_handlers(
        self,
        server: str,
        app_dir: str,
        caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Issue 19: an app calling basicConfig(INFO) got one httpx line per request."""
        caplog.set_level("INFO")
        argv = ["trace", "--app-dir", app_dir, "--server", server, "cliapp:app", "/wait"]

        assert cli.main([*argv, "-n", "2", "--format", "json"]) == 0

        assert [r.getMessage() for r in caplog.records if r.name.startswith("httpx")] == []

    def test_a_websocket_route_gets_a_hint_to_use_serve(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        trace(app_dir, "cliapp:app", "/ws", "--format", "json")

        assert capsys.readouterr().err.splitlines()[0] == (
            "asgitrace: /ws is a websocket route and trace sends HTTP requests; "
            "to trace it, run asgitrace serve cliapp:app and connect a websocket client"
        )

    def test_requests_without_an_answer_are_counted_and_the_status_is_1(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["trace", "--app-dir", app_dir, "cliapp:app", "/slow", "--timeout", "0.05"]

        status = cli.main(argv)

        out, err = capsys.readouterr()
        assert status == 1
        assert "No answer: GET /slow: ReadTimeout" in out
        assert err.startswith("asgitrace: 1 of 1 requests got no answer; the first: GET /slow")

    def test_nothing_traced_is_an_error(
        self, app_dir: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from asgitrace.cli import _run as _cli_run

        async def unanswered(app: Any, plan: Any, **options: Any) -> _cli_run.RunResult:
            return _cli_run.RunResult(0.1, ("GET /wait: ConnectError: refused",))

        monkeypatch.setattr(_cli_run, "send_requests", unanswered)

        assert trace(app_dir, "cliapp:app", "/wait") == 2
        assert capsys.readouterr().err == (
            "asgitrace: error: no request was traced: GET /wait: ConnectError: refused\n"
        )

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["nosuchmodule:app", "/"], "cannot import 'nosuchmodule': there is no module"),
            (["cliapp", "/"], "expected MODULE:APP, such as myapp:app or package.main:app"),
            (["cliapp:", "/"], "expected MODULE:APP"),
            (["cliapp:nope", "/"], "module 'cliapp' has no attribute 'nope' (apps found there: "),
            (["cliapp:app.nope", "/"], "module 'cliapp' has no attribute 'app.nope'"),
            (["cliapp:settings", "/"], "cliapp:settings is not an ASGI app: it is a dict, not"),
            (["cliapp:FastAPI", "/"], "it is the class FastAPI, not an instance of it"),
            (["cliapp:asyncio", "/"], "cliapp:asyncio is not an ASGI app: it is a module"),
            (["cliapp:plain_function", "/"], "cannot be called as app(scope, receive, send)"),
            (["cliapp:create_app", "/"], "(if it returns the app, pass --factory)"),
            (["cliapp:settings", "--factory", "/"], "is a dict, not a factory to call"),
            (["cliapp:broken_factory", "--factory", "/"], "RuntimeError: no database"),
            (["brokenapp:app", "/"], "importing 'brokenapp' failed: RuntimeError: DATABASE_URL"),
            (["depapp:app", "/"], "ModuleNotFoundError: No module named 'not_installed_depe"),
            (["cliapp:app", "items"], "paths start with '/', like /items/1; got 'items'"),
            (["cliapp:app", "/", "-n", "0"], "--requests must be at least 1"),
            (["cliapp:app", "/", "-c", "0"], "--concurrency must be at least 1"),
            (["cliapp:app", "/", "-H", "no colon"], "-H expects 'Name: value', got 'no colon'"),
            (["cliapp:app", "/", "-d", "@/no/such/body.json"], "cannot read the body from"),
            (["cliapp:app", "/", "--blocking-threshold", "0"], "--blocking-threshold must be"),
            (["cliapp:app", "/", "--slowest", "-1"], "--slowest must be 0 or more"),
            (["cliapp:app", "/", "-o", "/no/such/dir/out.txt"], "cannot write /no/such/dir/out"),
        ],
    )
    def test_errors_a_user_can_act_on_are_one_line_with_status_2(
        self, argv: list[str], message: str, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status = trace(app_dir, *argv)

        out, err = capsys.readouterr()
        assert status == 2
        assert err.startswith("asgitrace: error: "), err
        assert message in err
        assert err.count("\n") == 1
        assert "Traceback" not in out + err

    def test_an_app_with_its_own_trace_middleware_is_traced_by_its_own_tracer(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Not traced twice: an outer trace would miss what the inner one records."""
        assert trace(app_dir, "cliapp:already", "/block") == 0

        out, err = capsys.readouterr()
        assert "Block the event loop for " in out  # the app's own threshold: 20 ms
        assert err.startswith(
            "asgitrace: cliapp:already has its own TraceMiddleware: using its <Tracer "
        )

    def test_an_instrumented_app_is_traced_by_its_own_tracer(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert trace(app_dir, "cliapp:wrapped", "/", "--format", "json") == 0

        out, err = capsys.readouterr()
        assert exporters.load_json(out).status == 204
        assert "cliapp:wrapped has its own TraceMiddleware" in err

    def test_debug_after_the_command_shows_the_traceback(self, app_dir: str) -> None:
        with pytest.raises(cli.CliError, match="importing 'brokenapp' failed") as raised:
            trace(app_dir, "brokenapp:app", "/", "--debug")

        assert isinstance(raised.value.__cause__, RuntimeError)

    def test_a_package_installed_elsewhere_counts_as_the_apps_own_code(self, app_dir: str) -> None:
        package = Path(app_dir) / "shop"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "main.py").write_text("from cliapp import app\n")
        sys.modules.pop("shop", None)
        sys.modules.pop("shop.main", None)
        try:
            load_app("shop.main:app", app_dir=app_dir)
            load_app("shop.main:app", app_dir=app_dir)  # the folder is on sys.path now
            rule = cli_output.app_code("shop.main:app")
        finally:
            sys.modules.pop("shop", None)
            sys.modules.pop("shop.main", None)

        assert rule(str(package / "routes.py"))
        assert not rule(asyncio.__file__)
        assert cli_output.app_code("not_imported_here:app") is asgitrace.default_is_app_file


# -- show -------------------------------------------------------------------------------


@pytest.fixture
def saved(app_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Two traces (GET /wait, GET /block) saved by `asgitrace trace --format json`."""
    target = tmp_path / "saved.jsonl"
    argv = ["cliapp:app", "/wait", "/block", "--blocking-threshold", "0.02"]
    assert trace(app_dir, *argv, "--format", "json", "-o", str(target)) == 0
    capsys.readouterr()
    return target


class TestShow:
    def test_renders_saved_traces_as_tables_timeline_and_summary(
        self, saved: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert cli.main(["show", str(saved)]) == 0

        out = capsys.readouterr().out
        assert "Execution table · GET /wait → 200" in out
        assert "Execution table · GET /block → 200" in out
        assert "Timeline" in out
        assert f"cliapp.py:{BLOCK_LINE}   time.sleep(0.03)" in out
        assert "No step blocked" not in out

    def test_merges_several_files_and_keeps_each_trace_once(
        self, saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        traces = exporters.read_jsonl(saved)
        pretty = tmp_path / "one.json"
        pretty.write_text(exporters.to_json(traces[0], indent=2))
        listed = tmp_path / "list.json"
        listed.write_text("[" + ",".join(exporters.to_json(t) for t in traces) + "]")

        status = cli.main(["show", str(saved), str(pretty), str(listed), "--format", "json"])

        lines = capsys.readouterr().out.splitlines()
        assert status == 0
        assert [exporters.load_json(line).id for line in lines] == [t.id for t in traces]

    def test_many_traces_give_a_summary_and_the_slowest(
        self, saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        traces = exporters.read_jsonl(saved)
        copies = [
            exporters.load_json(exporters.to_json(t).replace(t.id, f"{t.id}{n}"))
            for n in range(3)
            for t in traces
        ]
        many = tmp_path / "many.jsonl"
        exporters.write_jsonl(copies, many)

        assert cli.main(["show", str(many), "--slowest", "1"]) == 0

        out = capsys.readouterr().out
        assert out.startswith("Summary · 6 requests in ")
        assert "The slowest request, in full" in out
        assert out.count("Execution table · ") == 1

    def test_malformed_lines_are_skipped_with_a_warning(
        self, saved: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with saved.open("a") as file:
            file.write("[not json\n" * 7)

        assert cli.main(["show", str(saved), "--format", "timeline"]) == 0

        out, err = capsys.readouterr()
        assert out.startswith("Timeline")
        assert err.startswith(f"asgitrace: skipped a malformed line: {saved}:3: not JSON")
        assert err.count("skipped a malformed line") == 5
        assert "... and 2 more malformed lines" in err

    def test_a_file_without_traces_is_an_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        notes = tmp_path / "notes.txt"
        notes.write_text("hello\n")

        assert cli.main(["show", str(notes)]) == 2

        err = capsys.readouterr().err
        assert err.endswith(f"asgitrace: error: no traces found in {notes}\n")
        assert err.startswith(f"asgitrace: skipped a malformed line: {notes}:1")

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ('{"hello": "world"}', "is not an asgitrace trace: unsupported trace schema"),
            ('[{"schema_version": 1}]', "(item 0) is not an asgitrace trace: "),
        ],
    )
    def test_a_json_document_that_is_not_a_trace_is_an_error(
        self, content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = tmp_path / "other.json"
        other.write_text(content)

        assert cli.main(["show", str(other)]) == 2

        assert message in capsys.readouterr().err

    @pytest.mark.parametrize("name", ["missing.jsonl", "."])
    def test_an_unreadable_file_is_one_line(
        self, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / name

        assert cli.main(["show", str(path)]) == 2

        err = capsys.readouterr().err
        assert err.startswith(f"asgitrace: error: cannot read {path}: ")
        assert err.count("\n") == 1


# -- serve ------------------------------------------------------------------------------


class TestServe:
    def test_prints_a_line_per_request_and_stops_cleanly_on_ctrl_c(
        self,
        app_dir: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A real SIGINT, as Ctrl-C sends: uvicorn shuts down, the file is complete."""
        jsonl = tmp_path / "served.jsonl"
        urls: queue.Queue[str] = queue.Queue()
        announce = cli_serve._announce

        def announce_and_tell(console: Console, url: str, path: str | None) -> None:
            announce(console, url, path)
            urls.put(url)

        def client() -> None:
            url = urls.get(timeout=30)
            try:
                with httpx.Client(base_url=url, timeout=10) as http:
                    http.get("/wait")
                    http.get("/block?token=secret&page=2")
            finally:
                os.kill(os.getpid(), signal.SIGINT)

        monkeypatch.setattr(cli_serve, "_announce", announce_and_tell)
        thread = threading.Thread(target=client, daemon=True)
        thread.start()

        argv = ["serve", "cliapp:app", "--app-dir", app_dir, "--port", "0"]
        status = cli.main([*argv, "--jsonl", str(jsonl), "--blocking-threshold", "0.02"])
        thread.join(10)

        out = capsys.readouterr().out
        lines = out.splitlines()
        assert status == 0
        assert lines[0].startswith("asgitrace serve: listening on http://127.0.0.1:")
        assert lines[0].endswith(f", traces appended to {jsonl} (Ctrl-C to stop)")
        assert " GET  /wait 200 " in lines[1]
        assert " · 1 wait " in lines[1]
        assert lines[1].endswith(" · no blocking")
        assert " GET  /block?token=[redacted]&page=2 200 " in lines[2]
        assert " · no waits · blocked " in lines[2]
        assert lines[2].endswith(f" at …/project/cliapp.py:{BLOCK_LINE}")
        assert lines[3] == f"Stopped after 2 requests; 2 written to {jsonl}."
        assert [t.path for t in exporters.read_jsonl(jsonl, strict=True)] == ["/wait", "/block"]

    def test_without_jsonl_it_reports_the_count_only(
        self,
        app_dir: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        async def stopped_at_once(app: Any, sock: Any, ready: Any) -> None:
            ready()

        monkeypatch.setattr(cli_serve, "_serve_forever", stopped_at_once)

        assert cli.main(["serve", "cliapp:app", "--app-dir", app_dir, "--port", "0"]) == 0

        lines = capsys.readouterr().out.splitlines()
        assert lines[0].endswith(" (Ctrl-C to stop)")
        assert ", traces appended to" not in lines[0]
        assert lines[1:] == ["Stopped after 0 requests."]

    def test_the_last_line_counts_requests_whose_line_was_not_printed(self) -> None:
        """Lines are printed by a worker thread from a bounded queue: a full queue skips a
        line, never the count."""
        assert str(cli_serve._stopped(3, 1, None, "t.jsonl")) == (
            "Stopped after 3 requests (1 not printed)."
        )
        assert str(cli_serve._stopped(1, 0, None, "t.jsonl")) == "Stopped after 1 request."

    @pytest.mark.parametrize("colours", [False, True])
    def test_the_printer_writes_a_batch_of_lines_at_once(
        self, colours: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """What the worker thread does, run here: the lines of a batch in one write, the
        same text with or without colours."""
        monkeypatch.setattr(cli_serve, "_PAUSE", 0.0)
        traces = asyncio.run(_two_quick_traces(False, 0.0, 2))
        out = io.StringIO()
        console = Console(
            file=out, force_terminal=colours, color_system="truecolor" if colours else None
        )
        lines = cli_serve._Lines(console)
        try:
            for trace in traces:
                lines._build(trace)
            lines._print()
            lines._print()  # nothing left: nothing written
        finally:
            lines.close()

        written = out.getvalue()
        assert ("\x1b[" in written) is colours
        plain = Text.from_ansi(written).plain if colours else written
        assert plain == "".join(f"{cli_serve.request_line(t).plain}\n" for t in traces)
        assert lines.unprinted == 0

    def test_lines_that_could_not_be_written_are_counted(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        class Broken(io.StringIO):
            def write(self, text: str) -> int:
                raise OSError("the terminal is gone")

        traces = asyncio.run(_two_quick_traces(False, 0.0, 2))
        lines = cli_serve._Lines(Console(file=Broken(), color_system=None))
        try:
            for trace in traces:
                lines._build(trace)
            with pytest.raises(OSError, match="gone"):
                lines._print()
        finally:
            lines.close()

        assert lines.unprinted == 2

    def test_sigterm_becomes_a_keyboard_interrupt_while_serving_only(self) -> None:
        before = signal.getsignal(signal.SIGTERM)
        with cli_serve._sigterm_stops_like_ctrl_c(), pytest.raises(KeyboardInterrupt):
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # type: ignore[operator]
        assert signal.getsignal(signal.SIGTERM) is before

        seen: list[object] = []

        def elsewhere() -> None:  # not the main thread: signals cannot be set there
            with cli_serve._sigterm_stops_like_ctrl_c():
                seen.append(signal.getsignal(signal.SIGTERM))

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join(10)
        assert seen == [before]

    def test_a_port_in_use_is_one_line(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]

            status = cli.main(["serve", "cliapp:app", "--app-dir", app_dir, "--port", str(port)])

        assert status == 2
        assert capsys.readouterr().err == (
            f"asgitrace: error: port {port} on 127.0.0.1 is in use: "
            "stop the other server or pick --port\n"
        )

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (["--host", "no-such-host.invalid"], "cannot listen on no-such-host.invalid:0: "),
            (["--host", "192.0.2.1"], "cannot listen on 192.0.2.1:0: "),
            (["--jsonl", "/no/such/dir/t.jsonl"], "cannot write /no/such/dir/t.jsonl: "),
        ],
    )
    def test_where_it_cannot_listen_or_write_is_one_line(
        self, options: list[str], message: str, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["serve", "cliapp:app", "--app-dir", app_dir, "--port", "0", *options]

        assert cli.main(argv) == 2

        err = capsys.readouterr().err
        assert err.startswith("asgitrace: error: " + message)
        assert err.count("\n") == 1

    def test_a_port_out_of_range_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as raised:
            cli.main(["serve", "cliapp:app", "--port", "99999"])

        assert raised.value.code == 2
        assert "expected a port from 0 to 65535, got '99999'" in capsys.readouterr().err

    def test_a_failing_startup_stops_with_one_line(
        self, app_dir: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["serve", "cliapp:failing", "--app-dir", app_dir, "--port", "0"]

        assert cli.main(argv) == 2

        err = capsys.readouterr().err
        assert err.splitlines()[-1] == (
            "asgitrace: error: the server stopped before it started (did the app's startup fail?)"
        )

    @pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
    def test_ctrl_c_in_a_terminal_keeps_the_file_whole(
        self, stop: signal.Signals, app_dir: str, tmp_path: Path
    ) -> None:
        """The whole command in its own interpreter, stopped the way a user (Ctrl-C) or a
        supervisor (SIGTERM) stops it: every line printed, the file whole."""
        jsonl = tmp_path / "served.jsonl"
        command = [sys.executable, "-m", "asgitrace", "serve", "cliapp:app", "--port", "0"]
        env = {**os.environ, "COLUMNS": "200"}
        with subprocess.Popen(
            [*command, "--app-dir", app_dir, "--jsonl", str(jsonl)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        ) as server:
            watchdog = threading.Timer(60, server.kill)
            watchdog.start()
            try:
                assert server.stdout is not None
                first = server.stdout.readline()
                url = first.split("listening on ")[1].split(",")[0]
                with httpx.Client(base_url=url, timeout=10) as http:
                    statuses = [http.get(f"/items/{n}").status_code for n in range(3)]
                server.send_signal(stop)
                out, err = server.communicate(timeout=30)
            finally:
                watchdog.cancel()

        assert statuses == [200, 200, 200]
        assert server.returncode == 0, err
        requests = out.splitlines()[:-1]  # the first line was read above
        assert [f" GET  /items/{n} 200 " in line for n, line in enumerate(requests)] == [True] * 3
        assert out.splitlines()[-1] == f"Stopped after 3 requests; 3 written to {jsonl}."
        assert len(exporters.read_jsonl(jsonl, strict=True)) == 3


# -- the summary and the line per request -------------------------------------------------


def test_request_line_escapes_control_characters_and_names_a_failure() -> None:
    from asgitrace.views._stats import request_line

    tracer = asgitrace.Tracer()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ValueError("no")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    async def run() -> None:
        scope = {"type": "http", "method": "GET", "path": "/\x1b[2Jx", "query_string": b""}
        with pytest.raises(ValueError, match="no"):
            await asgitrace.instrument(app, tracer=tracer)(scope, receive, send)

    asyncio.run(run())
    assert tracer.last is not None

    line = request_line(tracer.last).plain

    assert "GET  /\\x1b[2Jx — " in line
    assert line.endswith(" · no waits · no blocking · failed (ValueError)")


def test_summary_lists_requests_without_an_answer(capsys: pytest.CaptureFixture[str]) -> None:
    from asgitrace.views._summary import SummaryView, summarize, summary_markdown

    traces = asyncio.run(_two_quick_traces(False, 0.0, 2))
    errors = [f"GET /x{n}: ReadTimeout: timed out" for n in range(5)]

    summary = summarize(traces, errors=errors)
    Console(width=100, theme=asgitrace.THEME).print(SummaryView(summary, ascii=True))
    markdown = summary_markdown(summary)

    out = capsys.readouterr().out
    assert "No answer: GET /x2: ReadTimeout: timed out" in out
    assert "... and 2 more requests without an answer" in out
    assert "No step blocked the event loop." in out
    assert "5 requests got no answer; the first: GET /x0: ReadTimeout" in markdown
    assert "No step blocked the event loop." in markdown


def test_percentiles_are_nearest_rank() -> None:
    from asgitrace.views._summary import _percentile

    values = list(range(1, 101))

    assert [_percentile(values, q) for q in (0.5, 0.9, 0.99, 1.0)] == [50, 90, 99, 100]
    assert _percentile([7], 0.99) == 7


def test_plan_cycles_the_paths_and_picks_the_body_type(tmp_path: Path) -> None:
    from asgitrace.cli._run import plan_requests

    body = tmp_path / "form.txt"
    body.write_text("a=1&b=2")

    plan = plan_requests(["/a", "/b"], requests=3, data=f"@{body}")
    put = plan_requests(["/a"], method="put", data="x", headers=["Content-Type: text/plain"])

    assert [(r.method, r.path) for r in plan] == [("POST", "/a"), ("POST", "/b"), ("POST", "/a")]
    assert plan[0].body == b"a=1&b=2"
    assert plan[0].headers == (("Content-Type", "application/x-www-form-urlencoded"),)
    assert (put[0].method, put[0].headers) == ("PUT", (("Content-Type", "text/plain"),))
    assert plan_requests(["/a"])[0] == RequestSpec("GET", "/a", (), None)


def made_trace(
    *events: tuple[str, int, dict[str, Any]], id: str = "t1", status: int | None = 200
) -> asgitrace.Trace:
    """A trace from (kind, task id, fields) tuples, one millisecond apart."""
    return asgitrace.Trace.from_dict(
        {
            "schema_version": 1,
            "id": id,
            "type": "http",
            "method": "GET",
            "path": "/made",
            "route": None,
            "query": "",
            "headers": [],
            "response_headers": [],
            "status": status,
            "start": 1_700_000_000.0,
            "start_ns": 0,
            "end_ns": len(events) * 1_000_000,
            "dropped": 0,
            "events": [
                {
                    "seq": n,
                    "t_ns": n * 1_000_000,
                    "kind": kind,
                    "task": {"id": task, "name": f"Task-{task}"},
                    "fields": fields,
                }
                for n, (kind, task, fields) in enumerate(events, 1)
            ],
        }
    )


def test_trace_stats_count_real_waits_and_the_longest_block() -> None:
    from asgitrace.views._stats import trace_stats

    made = made_trace(
        ("received", 1, {"type": "http", "path": "/made", "method": "GET"}),
        ("awaiting", 1, {"target": "sync() in a worker thread", "cooperative": True}),
        ("resumed", 1, {"waited_ns": 5}),
        ("awaiting", 2, {"target": "asyncio.sleep(1)", "cooperative": False}),
        ("resumed", 2, {"waited_ns": 1_000}),
        ("blocked", 1, {"duration_ns": 300, "file": "/app/a.py", "line": 3, "code": "x()"}),
        ("blocked", 1, {"duration_ns": 100, "file": "/app/b.py", "line": 4, "code": "y()"}),
        ("failed", 1, {"exception": "ValueError", "status": None}),
        status=None,
    )

    assert trace_stats(made) == TraceStats(1, 1_000, 400, "/app/a.py:3")  # outside the cwd


def test_summary_headline_names_outcomes_and_the_markdown_lists_blocking() -> None:
    from asgitrace.views._summary import summarize, summary_markdown

    blocked = made_trace(
        ("blocked", 1, {"duration_ns": 3_000_000, "file": "/a.py", "line": 3, "code": "x | y"}),
        ("failed", 1, {"exception": "ValueError", "status": None}),
        status=None,
    )
    fine = made_trace(("completed", 1, {"status": 200}), id="t2")

    markdown = summary_markdown(summarize([blocked, fine], elapsed_s=0.0))

    assert markdown.startswith("# Summary\n\n2 requests · status 200 (1), — (1) · 1 failed\n")
    assert "| `/a.py:3` | `x \\| y` | 1 | 1 | 3.0 ms | 3.0 ms |" in markdown


def test_lifespan_that_never_answers_is_an_error_and_one_that_hangs_on_shutdown_is_cut() -> None:
    from asgitrace.cli._app import run_lifespan

    async def silent(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.Event().wait()

    async def no_shutdown(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await asyncio.Event().wait()

    async def run(app: Any) -> dict[str, Any]:
        async with run_lifespan(app, timeout=0.05) as state:
            return state

    with pytest.raises(cli.CliError, match=r"lifespan startup did not finish in 0\.05 s"):
        asyncio.run(run(silent))
    assert asyncio.run(run(no_shutdown)) == {}


def test_callables_without_a_signature_get_the_benefit_of_the_doubt() -> None:
    from asgitrace.cli._app import _not_asgi_reason

    class Opaque:
        __signature__ = "not a signature"  # what some C extensions' callables amount to

        def __call__(self, *args: Any) -> None:
            return None

    assert _not_asgi_reason(Opaque()) is None


def test_show_reads_a_single_pretty_printed_trace(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pretty = tmp_path / "one.json"
    pretty.write_text(exporters.to_json(exporters.read_jsonl(saved)[1], indent=2))

    assert cli.main(["show", str(pretty), "--format", "markdown"]) == 0

    out = capsys.readouterr().out
    assert out.startswith("# What happened during GET /block")
    assert "# Summary" not in out


def test_slowest_zero_keeps_only_the_summary(
    app_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trace(app_dir, "cliapp:app", "/items/1", "-n", "6", "--slowest", "0") == 0

    out = capsys.readouterr().out
    assert out.startswith("Summary · 6 requests")
    assert "Execution table" not in out
    assert "in full" not in out


def test_requests_without_an_answer_in_process(
    app_dir: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same report as over HTTP, measured here (coverage loses track after uvicorn
    and httpx on 3.11)."""
    from asgitrace.cli import _run as _cli_run

    send_requests = _cli_run.send_requests

    async def one_lost(app: Any, plan: Any, **options: Any) -> _cli_run.RunResult:
        result = await send_requests(app, plan, **options)
        return _cli_run.RunResult(result.elapsed, ("GET /wait: ReadTimeout: timed out",))

    monkeypatch.setattr(_cli_run, "send_requests", one_lost)

    assert trace(app_dir, "cliapp:app", "/wait", "/wait", "--format", "json") == 1

    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    assert "No answer: GET /wait: ReadTimeout: timed out" in err
    assert err.endswith(
        "asgitrace: 1 of 2 requests got no answer; the first: GET /wait: ReadTimeout: timed out\n"
    )


def test_ctrl_c_during_a_run_is_one_line_with_status_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: Any, console: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli._COMMANDS, "show", interrupted)

    assert cli.main(["show", "x.jsonl"]) == 130
    assert capsys.readouterr().err == "asgitrace: error: interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        cli.main(["show", "x.jsonl", "--debug"])


def test_a_port_that_is_not_a_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "cliapp:app", "--port", "http"])

    assert "expected a port from 0 to 65535, got 'http'" in capsys.readouterr().err


@pytest.mark.parametrize("form", ["markdown", "html"])
def test_all_reaches_the_markdown_page_and_the_html_report(
    form: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 19: ``--all`` unfolded the terminal tables only."""
    streaming = Path(__file__).parents[1] / "views" / "goldens" / "streaming.json"
    chunk = "Send response body (10 B, more to come)"
    assert cli.main(["show", str(streaming), "--format", form]) == 0
    assert chunk not in capsys.readouterr().out
    assert cli.main(["show", str(streaming), "--format", form, "--all"]) == 0
    assert chunk in capsys.readouterr().out
