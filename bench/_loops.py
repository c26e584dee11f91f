"""Event loops: which kinds exist here, and running a coroutine in a fresh one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOPS = ("asyncio", "uvloop")


def missing_loop(kind: str) -> str | None:
    """Why a loop of *kind* cannot be used here, or ``None`` when it can."""
    if kind == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "uvloop is not installed (pip install uvloop)"
    elif kind != "asyncio":
        return f"unknown event loop {kind!r}"
    return None


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """Return a function creating a new event loop of *kind* (``asyncio`` or ``uvloop``)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_in_new_loop(kind: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``main()`` to completion in a fresh loop of *kind*, then close it.

    A fresh loop per measurement keeps whatever one variant installs on its loop (a task
    factory, for instance) away from the variant measured next.
    """
    loop = loop_factory(kind)()
    try:
        return loop.run_until_complete(main())
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
