"""The ``asgitrace`` command line (also ``python -m asgitrace``)."""

from __future__ import annotations

import inspect
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import asgitrace
from asgitrace import cli
from asgitrace._demo import blocking_app, reference_app


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

    monkeypatch.setattr(cli, "_run_demo", broken)

    status = cli.main(["demo", "--delay", "0.01"])

    err = capsys.readouterr().err
    assert status == 1
    assert err == (
        "asgitrace: error: ConnectionError: server vanished (run with --debug for details)\n"
    )


def test_unexpected_error_with_debug_propagates(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any) -> list[Any]:
        raise ConnectionError("server vanished")

    monkeypatch.setattr(cli, "_run_demo", broken)

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


def test_version_option_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        cli.main(["--version"])

    assert raised.value.code == 0
    assert capsys.readouterr().out == f"asgitrace {asgitrace.__version__}\n"


def test_python_dash_m_runs_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["asgitrace", "--version"])

    with pytest.raises(SystemExit) as raised:
        # run_path: pytest's assertion-rewriting import hook cannot serve run_module here.
        runpy.run_path(
            str(Path(asgitrace.__file__).with_name("__main__.py")), run_name="asgitrace.__main__"
        )

    assert raised.value.code == 0
    assert capsys.readouterr().out == f"asgitrace {asgitrace.__version__}\n"


def test_python_dash_m_version_in_a_fresh_interpreter() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asgitrace", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (done.returncode, done.stdout) == (0, f"asgitrace {asgitrace.__version__}\n")


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
    monkeypatch.setattr(cli, "_run_demo", _two_quick_traces)

    status = cli.main(["demo", *flags, "-c", "2"])

    out = capsys.readouterr().out
    assert status == 0
    assert "GET /wait → 200" in out
    assert sentence in out
