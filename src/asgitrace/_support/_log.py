"""The package logger and the fail-open helper every probe uses."""

from __future__ import annotations

import contextlib
import logging

__all__ = ["LOGGER", "log_failure"]

LOGGER = logging.getLogger("asgitrace")

_reported: set[str] = set()


def log_failure(where: str, exc: BaseException | None = None) -> None:
    """Log, once per *where*, that an asgitrace component failed and was disabled.

    asgitrace is fail-open: its own errors never reach the app or its client. The first
    failure of each component is logged with its traceback; repeats are silent.
    """
    if where in _reported:
        return
    _reported.add(where)
    # A broken log handler must not turn our failure into the app's.
    with contextlib.suppress(Exception):
        LOGGER.error(
            "asgitrace: %s failed and was disabled; the app is unaffected",
            where,
            exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None,
        )
