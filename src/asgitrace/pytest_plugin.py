"""The asgitrace pytest plugin, registered through the ``pytest11`` entry point.

It is a thin layer over `asgitrace.testing` and the only asgitrace module that imports
pytest. ``-p no:asgitrace`` disables it.

* Fixtures: ``asgitrace_tracer`` (a fresh `Tracer` per test), ``asgitrace_client`` (a
  factory of ``httpx.AsyncClient`` over ``httpx.ASGITransport`` for an app traced by that
  tracer) and ``asgitrace_test_client`` (the same with Starlette's ``TestClient``).
* The marker ``@pytest.mark.asgitrace(max_blocking_ms=50)``, and the ini option
  ``asgitrace_max_blocking_ms`` for a project-wide default: the test fails when a request
  traced by its ``asgitrace_tracer`` blocked the event loop longer than that.
* ``--asgitrace-show`` (ini ``asgitrace_show = true``, or the marker's ``show=True``):
  a failed test's report shows the execution table of each request it traced.

.. versionadded:: 0.1
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import pytest

import asgitrace
from asgitrace import TraceMiddleware, Tracer, instrument
from asgitrace.testing import BlockingError, _blocked_over, render_text

if TYPE_CHECKING:
    import httpx
    from starlette.testclient import TestClient

    from ._support import ASGIApp

__all__ = [
    "DEFAULT_MAX_BLOCKING_MS",
    "AsyncClientFactory",
    "SyncClientFactory",
    "asgitrace_client",
    "asgitrace_test_client",
    "asgitrace_tracer",
]

DEFAULT_MAX_BLOCKING_MS: Final = 100.0
"""The budget of a bare ``@pytest.mark.asgitrace`` when no ini option sets one."""

_MAX_SHOWN: Final = 20
_MARKER_OPTIONS: Final = frozenset({"max_blocking_ms", "show"})
_FAILED_BY_BLOCKING: Final = pytest.StashKey[bool]()


class AsyncClientFactory(Protocol):
    """The ``asgitrace_client`` fixture: makes an ``httpx.AsyncClient`` for an app.

    .. versionadded:: 0.1
    """

    def __call__(
        self, app: ASGIApp, /, *, base_url: str = "http://testserver", **kwargs: Any
    ) -> httpx.AsyncClient: ...


class SyncClientFactory(Protocol):
    """The ``asgitrace_test_client`` fixture: makes a Starlette ``TestClient`` for an app.

    .. versionadded:: 0.1
    """

    def __call__(self, app: ASGIApp, /, **kwargs: Any) -> TestClient: ...


@dataclass(frozen=True, slots=True)
class _Settings:
    max_blocking_ms: float | None
    source: str
    show: bool


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asgitrace", "asgitrace: what the event loop did")
    group.addoption(
        "--asgitrace-show",
        action="store_true",
        default=None,
        help="show the execution table of each request a failed test traced",
    )
    group.addoption(
        "--asgitrace-max-blocking-ms",
        metavar="MS",
        default=None,
        help="fail tests whose traced requests blocked the event loop longer than MS "
        "milliseconds (overrides the ini option; 'none' turns the check off)",
    )
    parser.addini(
        "asgitrace_show",
        type="bool",
        default=False,
        help="show the execution table of each request a failed test traced",
    )
    parser.addini(
        "asgitrace_max_blocking_ms",
        default="",
        help="fail tests whose traced requests blocked the event loop longer than this "
        "many milliseconds (default: no check; @pytest.mark.asgitrace overrides it)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "asgitrace(max_blocking_ms=100, show=False): fail the test if a request traced by "
        "its asgitrace_tracer blocked the event loop longer than max_blocking_ms "
        "(None: no check); show=True adds the execution tables to a failure's report.",
    )
    _configured_budget(config)  # a bad option stops the run here, not in every test


def pytest_report_header(config: pytest.Config) -> str:
    budget, source = _configured_budget(config)
    if budget is None:
        return f"asgitrace: {asgitrace.__version__}"
    return f"asgitrace: {asgitrace.__version__}, max_blocking_ms={budget:g} ({source})"


def _parse_budget(value: object, where: str) -> float | None:
    """A budget in milliseconds from an option or the marker; ``None``: no check."""
    if value is None:
        return None
    number = math.nan
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none"):
            return None
        with contextlib.suppress(ValueError):
            number = float(text)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if math.isfinite(number) and number > 0:
        return number
    raise ValueError(
        f"asgitrace: {where} must be a positive number of milliseconds or None, got {value!r}"
    )


def _configured_budget(config: pytest.Config) -> tuple[float | None, str]:
    """The project-wide budget: the command line's, else the ini file's."""
    option = config.getoption("asgitrace_max_blocking_ms")
    try:
        if option is not None:
            where = f"--asgitrace-max-blocking-ms={option}"
            return _parse_budget(option, "--asgitrace-max-blocking-ms"), where
        ini = config.getini("asgitrace_max_blocking_ms")
        return _parse_budget(ini, "the ini option asgitrace_max_blocking_ms"), (
            f"ini option asgitrace_max_blocking_ms = {ini}"
        )
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _settings(item: pytest.Item) -> _Settings:
    budget, source = _configured_budget(item.config)
    show = bool(item.config.getoption("asgitrace_show") or item.config.getini("asgitrace_show"))
    marker = item.get_closest_marker("asgitrace")
    if marker is not None:
        unknown = sorted(set(marker.kwargs) - _MARKER_OPTIONS)
        if marker.args or unknown:
            pytest.fail(
                "asgitrace: @pytest.mark.asgitrace takes only the keyword arguments "
                f"max_blocking_ms and show (got {marker.args!r}, {unknown!r})",
                pytrace=False,
            )
        if "max_blocking_ms" in marker.kwargs:
            value = marker.kwargs["max_blocking_ms"]
            try:
                budget = _parse_budget(value, "@pytest.mark.asgitrace(max_blocking_ms=...)")
            except ValueError as exc:
                pytest.fail(str(exc), pytrace=False)
            source = f"@pytest.mark.asgitrace(max_blocking_ms={value!r})"
        elif budget is None:
            budget = DEFAULT_MAX_BLOCKING_MS
            source = f"@pytest.mark.asgitrace (default {DEFAULT_MAX_BLOCKING_MS:g} ms)"
        show = bool(marker.kwargs.get("show", show))
    return _Settings(budget, source, show)


@pytest.fixture
def asgitrace_tracer(request: pytest.FixtureRequest) -> Tracer:
    """A fresh `Tracer` for this test; every app the client fixtures make records into it.

    Its ``blocking_threshold`` is half the test's blocking budget (at most the
    `Tracer` default, 0.1 s), so that the line of a step over the budget is sampled in
    time: ``blocked`` events shorter than the budget can be recorded too; the budget
    check ignores them.

    Override it in a ``conftest.py`` to configure the tracer differently.

    .. versionadded:: 0.1
    """
    budget = _settings(request.node).max_blocking_ms
    threshold = 0.1 if budget is None else min(0.1, budget / 2000)
    return Tracer(blocking_threshold=threshold)


def _instrumented(app: ASGIApp, tracer: Tracer) -> ASGIApp:
    if isinstance(app, TraceMiddleware) and app.tracer is tracer:
        return app
    return instrument(app, tracer=tracer)


@pytest.fixture
def asgitrace_client(asgitrace_tracer: Tracer) -> AsyncClientFactory:
    """A factory of ``httpx.AsyncClient`` objects that call an app in-process, traced.

    ``asgitrace_client(app, **kwargs)`` wraps *app* with `asgitrace.instrument` into
    ``asgitrace_tracer`` and returns ``httpx.AsyncClient(transport=httpx.ASGITransport(
    app=...), base_url="http://testserver", **kwargs)``. Use it with or without
    ``async with``. Lifespan events are not sent (use ``asgitrace_test_client`` for
    them).

    .. versionadded:: 0.1
    """

    def factory(
        app: ASGIApp, /, *, base_url: str = "http://testserver", **kwargs: Any
    ) -> httpx.AsyncClient:
        import httpx

        transport = httpx.ASGITransport(app=_instrumented(app, asgitrace_tracer))
        return httpx.AsyncClient(transport=transport, base_url=base_url, **kwargs)

    return factory


@pytest.fixture
def asgitrace_test_client(asgitrace_tracer: Tracer) -> Iterator[SyncClientFactory]:
    """A factory of Starlette ``TestClient`` objects for an app, traced.

    ``asgitrace_test_client(app, **kwargs)`` wraps *app* with `asgitrace.instrument` into
    ``asgitrace_tracer`` and returns ``TestClient(app, **kwargs)``, for synchronous
    tests. Use ``with`` to run the app's lifespan; clients are closed after the test.

    .. versionadded:: 0.1
    """
    clients: list[TestClient] = []

    def factory(app: ASGIApp, /, **kwargs: Any) -> TestClient:
        from starlette.testclient import TestClient

        client = TestClient(_instrumented(app, asgitrace_tracer), **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def _tracer_of(item: pytest.Item) -> Tracer | None:
    tracer = getattr(item, "funcargs", {}).get("asgitrace_tracer")
    return tracer if isinstance(tracer, Tracer) else None


def _shows_tables(item: pytest.Item) -> bool:
    return _settings(item).show or item.config.get_verbosity() >= 2


def _blocking_message(item: pytest.Item, tracer: Tracer) -> str | None:
    settings = _settings(item)
    if settings.max_blocking_ms is None:
        return None
    blocked = _blocked_over(tracer, settings.max_blocking_ms / 1000)
    if not blocked:
        return None
    hint = (
        f"The limit comes from {settings.source}.\n"
        "Change it with @pytest.mark.asgitrace(max_blocking_ms=...); max_blocking_ms=None\n"
        "turns the check off for a test."
    )
    # The message has the key moments and the rows around the blocking step; the whole
    # table goes once, in the tables section (show=True or -vv), never in the message
    # that pytest repeats in its summary.
    if not _shows_tables(item):
        hint += "\nRun with -vv (or show=True) for the whole execution table."
    error = BlockingError(blocked, settings.max_blocking_ms / 1000, hint=hint, tables="focus")
    return "asgitrace: " + str(error)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    item.stash[_FAILED_BY_BLOCKING] = False  # a rerun starts afresh
    result = yield  # a test that failed by itself is reported as is (see makereport)
    tracer = _tracer_of(item)
    if tracer is not None:
        message = _blocking_message(item, tracer)
        if message is not None:
            item.stash[_FAILED_BY_BLOCKING] = True
            pytest.fail(message, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when != "call" or not report.failed:
        return report
    tracer = _tracer_of(item)
    if tracer is None:
        return report
    if not item.stash.get(_FAILED_BY_BLOCKING, False):
        message = _blocking_message(item, tracer)
        if message is not None:
            report.sections.append(("asgitrace: blocking", message))
    if _shows_tables(item):
        report.sections.append(("asgitrace: execution tables", _tables(tracer)))
    return report


def _tables(tracer: Tracer) -> str:
    traces = tracer.traces
    if not traces:
        return "(no request was traced)"
    parts = [render_text(trace).rstrip("\n") for trace in traces[:_MAX_SHOWN]]
    if len(traces) > _MAX_SHOWN:
        parts.append(f"(and {len(traces) - _MAX_SHOWN} more request(s) not shown)")
    return "\n\n".join(parts)
