"""The pytest plugin, run the way users run it: in a pytest of its own, through ``pytester``."""

from __future__ import annotations

from textwrap import dedent

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _inner_runs_in_file_order(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pytester sessions check their report line by line: with pytest-randomly
    installed (`pytest -p randomly` of the outer suite), their own tests would be
    shuffled too. Harmless without it. (After `pytester`, which clears the variable.)"""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")


APP = """\
import asyncio
import time

import pytest
from fastapi import FastAPI

from asgitrace.testing import assert_order

app = FastAPI()


@app.get("/wait")
async def wait_endpoint():
    await asyncio.sleep(0.01)
    return {"message": "Done waiting"}


@app.get("/block")
async def block_endpoint():
    time.sleep(0.06)
    return {"message": "Done waiting"}


@app.get("/fast")
async def fast_endpoint():
    return {}
"""
BLOCK_LINE = APP.splitlines().index("    time.sleep(0.06)") + 1

INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
filterwarnings =
    error
    ignore:Using `httpx` with `starlette.testclient` is deprecated:UserWarning
"""


def run(
    pytester: pytest.Pytester, tests: str, *args: str, mode: str = "strict", ini: str = ""
) -> pytest.RunResult:
    """Write the app and *tests* to ``test_app.py`` and run pytest on it in *mode*."""
    pytester.makeini(INI + dedent(ini))
    pytester.makepyfile(test_app=APP + dedent(tests))
    return pytester.runpytest("-p", "no:cacheprovider", f"--asyncio-mode={mode}", *args)


BLOCKING_FAILURE = [
    "*_ test_block _*",
    "asgitrace: GET /block → 200 blocked the event loop for * ms, longer than the 50 ms allowed",
    "",
    f"  GET /block → 200: * ms at test_app.py:{BLOCK_LINE} in block_endpoint",
    "      time.sleep(0.06)",
    "",
    "While one step runs, the event loop serves nothing else: every other request waits.",
    "*",
    "*",
    "",
    "The limit comes from @pytest.mark.asgitrace(max_blocking_ms=50).",
    "Change it with @pytest.mark.asgitrace(max_blocking_ms=...); max_blocking_ms=None",
    "turns the check off for a test.",
    "",
    "Execution table*GET /block*",
]


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_order_passes_and_a_blocking_endpoint_fails_explaining_itself(
    pytester: pytest.Pytester, mode: str
) -> None:
    """The issue's "done when": each test is a few lines; the failing one names the line."""
    marker = "@pytest.mark.asyncio\n" if mode == "strict" else ""
    tests = f"""

{marker}async def test_wait(asgitrace_client, asgitrace_tracer):
    await asgitrace_client(app).get("/wait")
    assert_order(asgitrace_tracer.last, "received", "awaiting", "yielded", "resumed", "sent")


@pytest.mark.asgitrace(max_blocking_ms=50)
{marker}async def test_block(asgitrace_client):
    await asgitrace_client(app).get("/block")
"""
    result = run(pytester, tests, mode=mode)

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [*BLOCKING_FAILURE, "FAILED test_app.py::test_block - Failed: asgitrace: GET /block*"]
    )
    assert "pytest_plugin.py" not in result.stdout.str()  # no traceback into the plugin


def test_order_failure_shows_the_expected_order_and_the_table(
    pytester: pytest.Pytester,
) -> None:
    tests = """

@pytest.mark.asyncio
async def test_block_order(asgitrace_client, asgitrace_tracer):
    await asgitrace_client(app).get("/block")
    assert_order(asgitrace_tracer.last, "received", "awaiting", "sent")
"""
    result = run(pytester, tests)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       asgitrace.TraceOrderError: trace order mismatch",
            "E         expected: received, awaiting, sent",
            # `returned` on 3.12+ (sys.monitoring sees the endpoint return), none before.
            "E         actual:   received, entered, *sent, sent, completed",
            "E         no match for step 2: awaiting (none of events 2-* matches; *",
            "E         request:  GET /block → 200, * ms",
            "E       ",
            "E       Execution table*",
        ]
    )


def test_sync_test_client_variant(pytester: pytest.Pytester) -> None:
    tests = """

CLIENTS = []


def test_wait(asgitrace_test_client, asgitrace_tracer):
    with asgitrace_test_client(app) as client:
        assert client.get("/wait").json() == {"message": "Done waiting"}
    CLIENTS.append(asgitrace_test_client(app, base_url="http://example.org"))
    assert CLIENTS[0].get("/fast").request.url == "http://example.org/fast"
    assert [t.path for t in asgitrace_tracer.traces] == ["/wait", "/fast"]
    assert_order(asgitrace_tracer.traces[0], "received", "awaiting", "resumed", "sent")


def test_clients_are_closed_after_the_test():
    assert CLIENTS[0].is_closed


@pytest.mark.asgitrace(max_blocking_ms=50)
def test_block(asgitrace_test_client):
    asgitrace_test_client(app).get("/block")
"""
    result = run(pytester, tests)

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(BLOCKING_FAILURE)


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_anyio_plugin(pytester: pytest.Pytester, mode: str) -> None:
    tests = """

@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_wait(asgitrace_client, asgitrace_tracer):
    async with asgitrace_client(app) as client:
        await client.get("/wait")
    assert_order(asgitrace_tracer.last, "received", "awaiting", "yielded", "resumed", "sent")


@pytest.mark.asgitrace(max_blocking_ms=50)
@pytest.mark.anyio
async def test_block(asgitrace_client):
    await asgitrace_client(app).get("/block")
"""
    result = run(pytester, tests, mode=mode)

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(BLOCKING_FAILURE)


def test_client_factory_passes_options_and_traces_each_request_once(
    pytester: pytest.Pytester,
) -> None:
    tests = """
import httpx
from asgitrace import Tracer, instrument


@pytest.mark.asyncio
async def test_client(asgitrace_client, asgitrace_tracer):
    client = asgitrace_client(app, headers={"x-test": "1"})
    assert isinstance(client, httpx.AsyncClient)
    response = await client.get("/fast")
    assert response.request.url == "http://testserver/fast"
    assert response.request.headers["x-test"] == "1"

    already = instrument(app, tracer=asgitrace_tracer)
    await asgitrace_client(already, base_url="http://other").get("/fast")
    assert len(asgitrace_tracer.traces) == 2

    own = Tracer()
    await asgitrace_client(instrument(app, tracer=own)).get("/fast")
    assert (len(asgitrace_tracer.traces), len(own.traces)) == (3, 1)
"""
    run(pytester, tests).assert_outcomes(passed=1)


def test_ini_option_sets_a_project_wide_budget_that_the_marker_overrides(
    pytester: pytest.Pytester,
) -> None:
    tests = """

def test_block(asgitrace_test_client):
    asgitrace_test_client(app).get("/block")


@pytest.mark.asgitrace(max_blocking_ms=None)
def test_block_unchecked(asgitrace_test_client):
    asgitrace_test_client(app).get("/block")


@pytest.mark.asgitrace(max_blocking_ms=5000)
def test_block_allowed(asgitrace_test_client):
    asgitrace_test_client(app).get("/block")


def test_block_untraced():
    from starlette.testclient import TestClient
    TestClient(app).get("/block")
"""
    ini = "asgitrace_max_blocking_ms = 50\n"
    result = run(pytester, tests, ini=ini)

    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "asgitrace: *, max_blocking_ms=50 (ini option asgitrace_max_blocking_ms = 50)",
            "*",
            "FAILED test_app.py::test_block - Failed: asgitrace: GET /block → 200 blocked*",
        ]
    )
    result.stdout.fnmatch_lines(["The limit comes from ini option asgitrace_max_blocking_ms = 50."])

    result = pytester.runpytest("-p", "no:cacheprovider", "--asgitrace-max-blocking-ms=none")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["asgitrace: *"])
    assert "max_blocking_ms=" not in result.stdout.str()


def test_command_line_budget_overrides_the_ini_option(pytester: pytest.Pytester) -> None:
    tests = """

def test_block(asgitrace_test_client):
    asgitrace_test_client(app).get("/block")


@pytest.mark.asgitrace(show=True)
def test_block_shown(asgitrace_test_client):
    asgitrace_test_client(app).get("/block")
"""
    result = run(
        pytester, tests, "--asgitrace-max-blocking-ms=50", ini="asgitrace_max_blocking_ms = 5000\n"
    )

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "asgitrace: *, max_blocking_ms=50 (--asgitrace-max-blocking-ms=50)",
            "*_ test_block _*",
            "The limit comes from --asgitrace-max-blocking-ms=50.",
            "*_ test_block_shown _*",
            "The limit comes from --asgitrace-max-blocking-ms=50.",
            "*- asgitrace: execution tables -*",
        ]
    )


def test_bare_marker_allows_a_hundred_milliseconds(pytester: pytest.Pytester) -> None:
    tests = """

@app.get("/longer")
async def longer_endpoint():
    time.sleep(0.15)
    return {}


@pytest.mark.asgitrace
def test_block(asgitrace_test_client):
    asgitrace_test_client(app).get("/block")


@pytest.mark.asgitrace
def test_longer(asgitrace_test_client):
    asgitrace_test_client(app).get("/longer")
"""
    result = run(pytester, tests)

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "asgitrace: GET /longer → 200 blocked the event loop for * ms, "
            "longer than the 100 ms allowed",
            "*",
            "*      time.sleep(0.15)",
            "*",
            "The limit comes from @pytest.mark.asgitrace (default 100 ms).",
        ]
    )


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        pytest.param(
            (),
            "asgitrace_max_blocking_ms = fast\n",
            "ERROR: asgitrace: the ini option asgitrace_max_blocking_ms must be a positive "
            "number of milliseconds or None, got 'fast'",
            id="ini",
        ),
        pytest.param(
            ("--asgitrace-max-blocking-ms=-5",),
            "",
            "ERROR: asgitrace: --asgitrace-max-blocking-ms must be a positive number of "
            "milliseconds or None, got '-5'",
            id="command line",
        ),
    ],
)
def test_bad_budget_option_stops_the_run(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str, message: str
) -> None:
    result = run(pytester, "", *args, ini=ini)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_bad_marker_is_an_error_of_that_test(pytester: pytest.Pytester) -> None:
    tests = """

@pytest.mark.asgitrace(max_blocking_ms=0)
def test_zero(asgitrace_tracer):
    pass


@pytest.mark.asgitrace(max_blocking_ms=True)
def test_flag(asgitrace_tracer):
    pass


@pytest.mark.asgitrace(max_blocking_ms="50")
def test_text_is_read_as_a_number(asgitrace_tracer):
    assert asgitrace_tracer.blocking_threshold == 0.025


@pytest.mark.asgitrace(50)
def test_positional(asgitrace_tracer):
    pass


@pytest.mark.asgitrace(max_blocking=50)
def test_unknown(asgitrace_tracer):
    pass


@pytest.mark.asgitrace(max_blocking_ms=12.5)
def test_fraction(asgitrace_tracer):
    assert asgitrace_tracer.blocking_threshold == 0.00625


def test_default_tracer(asgitrace_tracer):
    assert asgitrace_tracer.blocking_threshold == 0.1
"""
    result = run(pytester, tests)

    result.assert_outcomes(passed=3, errors=4)
    result.stdout.fnmatch_lines_random(
        [
            "asgitrace: @pytest.mark.asgitrace(max_blocking_ms=...) must be a positive "
            "number of milliseconds or None, got 0",
            "asgitrace: @pytest.mark.asgitrace(max_blocking_ms=...) must be a positive "
            "number of milliseconds or None, got True",
            "asgitrace: @pytest.mark.asgitrace takes only the keyword arguments "
            "max_blocking_ms and show (got (50,), [])",
            "asgitrace: @pytest.mark.asgitrace takes only the keyword arguments "
            "max_blocking_ms and show (got (), ['max_blocking'])",
        ]
    )


def test_show_adds_the_execution_tables_to_failed_tests(pytester: pytest.Pytester) -> None:
    tests = """

def test_fails_after_a_request(asgitrace_test_client):
    asgitrace_test_client(app).get("/wait")
    assert False, "the test's own failure"


def test_passes(asgitrace_test_client):
    asgitrace_test_client(app).get("/fast")


def test_fails_without_requests(asgitrace_tracer):
    assert False


def test_fails_after_many_requests(asgitrace_test_client):
    with asgitrace_test_client(app) as client:
        for _ in range(21):
            client.get("/fast")
    assert False


def test_fails_untraced():
    assert False
"""
    result = run(pytester, tests, "--asgitrace-show")

    result.assert_outcomes(passed=1, failed=4)
    out = result.stdout.str()
    assert out.count("- asgitrace: execution tables -") == 3
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_after_a_request _*",
            "E   *AssertionError: the test's own failure",
            "*- asgitrace: execution tables -*",
            "Execution table*GET /wait → 200*",
            "*_ test_fails_without_requests _*",
            "*- asgitrace: execution tables -*",
            "(no request was traced)",
            "*_ test_fails_after_many_requests _*",
            "*- asgitrace: execution tables -*",
            "(and 1 more request(s) not shown)",
            "*_ test_fails_untraced _*",
            "E       assert False",
            "*short test summary info*",
        ]
    )
    assert "/fast" not in out.split("_ test_fails_after_many_requests _")[0]


@pytest.mark.parametrize(
    ("marker", "ini", "args", "shown"),
    [
        pytest.param("", "asgitrace_show = true\n", (), True, id="ini"),
        pytest.param("@pytest.mark.asgitrace(show=True)", "", (), True, id="marker"),
        pytest.param(
            "@pytest.mark.asgitrace(show=False)", "", ("--asgitrace-show",), False, id="marker off"
        ),
        pytest.param("", "", (), False, id="default"),
    ],
)
def test_show_from_ini_or_marker(
    pytester: pytest.Pytester, marker: str, ini: str, args: tuple[str, ...], shown: bool
) -> None:
    tests = f"""

{marker}
def test_fails(asgitrace_test_client):
    asgitrace_test_client(app).get("/wait")
    assert False
"""
    result = run(pytester, tests, *args, ini=ini)

    result.assert_outcomes(failed=1)
    assert ("- asgitrace: execution tables -" in result.stdout.str()) is shown


def test_blocking_is_noted_when_a_test_fails_for_another_reason(
    pytester: pytest.Pytester,
) -> None:
    tests = """

@pytest.mark.asgitrace(max_blocking_ms=50)
def test_block_and_fail(asgitrace_test_client):
    asgitrace_test_client(app).get("/block")
    assert False, "the test's own failure"


@pytest.mark.xfail(reason="blocks on purpose", strict=True)
@pytest.mark.asgitrace(max_blocking_ms=50)
def test_block_expected(asgitrace_test_client):
    asgitrace_test_client(app).get("/block")
"""
    result = run(pytester, tests)

    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *AssertionError: the test's own failure",
            "*- asgitrace: blocking -*",
            "asgitrace: GET /block → 200 blocked the event loop for * ms, "
            "longer than the 50 ms allowed",
        ]
    )


def test_overridden_tracer_fixture_is_checked(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest
from asgitrace import Tracer


@pytest.fixture
def asgitrace_tracer():
    return Tracer(blocking_threshold=0.01, watch=["x"])
"""
    )
    tests = """

@pytest.mark.asgitrace(max_blocking_ms=50)
def test_block(asgitrace_test_client, asgitrace_tracer):
    assert asgitrace_tracer.watch == ("x",)
    asgitrace_test_client(app).get("/block")
"""
    result = run(pytester, tests)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED test_app.py::test_block - Failed: asgitrace: GET /block*"])


def test_a_fixture_named_like_the_tracer_but_not_one_is_ignored(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
import pytest


@pytest.fixture
def asgitrace_tracer():
    return "not a tracer"
"""
    )
    tests = """

@pytest.mark.asgitrace(max_blocking_ms=50, show=True)
def test_fails(asgitrace_tracer):
    assert False
"""
    result = run(pytester, tests)

    result.assert_outcomes(failed=1)
    assert "asgitrace: execution tables" not in result.stdout.str()


def test_marker_is_registered_and_documented(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    result = pytester.runpytest("-p", "no:cacheprovider", "--markers")

    result.stdout.fnmatch_lines(
        ["@pytest.mark.asgitrace(max_blocking_ms=100, show=False): fail the test if *"]
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--help")
    result.stdout.fnmatch_lines(
        [
            "asgitrace: what the event loop did:",
            "  --asgitrace-show*",
            "  --asgitrace-max-blocking-ms=MS*",
        ]
    )


def test_plugin_is_disabled_with_p_no_asgitrace(pytester: pytest.Pytester) -> None:
    tests = """

def test_tracer(asgitrace_tracer):
    pass
"""
    result = run(pytester, tests, "-p", "no:asgitrace")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'asgitrace_tracer' not found*"])
    assert "asgitrace: 0" not in result.stdout.str()


def test_blocking_is_caught_in_requests_made_from_child_tasks(pytester: pytest.Pytester) -> None:
    """A request served inside a task the hook already drives still gets its blocked event."""
    tests = """

@pytest.mark.asgitrace(max_blocking_ms=50)
@pytest.mark.asyncio
async def test_block(asgitrace_client, asgitrace_tracer):
    client = asgitrace_client(app)
    await client.get("/fast")  # installs the task hook on this loop
    await asyncio.gather(client.get("/block"))
"""
    result = run(pytester, tests)

    result.assert_outcomes(failed=1)


def test_blocking_is_caught_on_a_loop_shared_between_tests(pytester: pytest.Pytester) -> None:
    """A stricter budget on a loop an earlier test traced lowers the loop's threshold."""
    tests = """

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_first(asgitrace_client):
    await asgitrace_client(app).get("/fast")


@pytest.mark.asgitrace(max_blocking_ms=50)
async def test_block(asgitrace_client):
    await asgitrace_client(app).get("/block")
"""
    result = run(pytester, tests)

    result.assert_outcomes(passed=1, failed=1)


_MANY_AWAITS = """

@app.get("/many")
async def many_endpoint():
    for _ in range(12):
        await asyncio.sleep(0.002)
    time.sleep(0.06)
    return {}


def test_block(asgitrace_test_client):
    asgitrace_test_client(app).get("/many")


@pytest.mark.asgitrace(show=True)
def test_block_shown(asgitrace_test_client):
    asgitrace_test_client(app).get("/many")
"""


@pytest.mark.parametrize(
    ("args", "focused", "whole"),
    [
        pytest.param((), 2, 1, id="default: rows around the culprit; show=True: whole once"),
        pytest.param(("-vv",), 2, 2, id="-vv: the whole table once per test"),
    ],
)
def test_a_blocking_failure_is_short_and_never_shows_a_table_twice(
    pytester: pytest.Pytester, args: tuple[str, ...], focused: int, whole: int
) -> None:
    """Issue 19: a failing marker added a ~150-line table, twice with ``show=True``."""
    result = run(pytester, _MANY_AWAITS, "--asgitrace-max-blocking-ms=50", *args)
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    report = out.split("short test summary info")[0]
    assert report.count("Execution table · GET /many") == focused + whole
    assert report.count("asgitrace: execution tables") == whole
    assert report.count("Key moments") == focused + whole
    if not args:
        assert "Run with -vv (or show=True) for the whole execution table." in out
