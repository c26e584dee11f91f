"""`Tracer`: what to trace, how much to keep, and where finished traces go."""

from __future__ import annotations

import functools
import random
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, final

from .._support import Redactor, log_failure
from ..trace import Trace
from ._recorder import Recorder
from ._walk import AppCode, snapshot

if TYPE_CHECKING:
    import asyncio

    from .._support import Clock

__all__ = ["OnTrace", "Tracer"]

OnTrace: TypeAlias = Callable[["Trace"], object]
"""A callback called with every finished, retained trace (on the event loop's thread).

It must be quick: hand slow work (files, network) to a thread or a queue.
"""


def _paths_matcher(exclude: Iterable[str | re.Pattern[str]]) -> Callable[[str], bool]:
    exact: set[str] = set()
    prefixes: list[str] = []
    patterns: list[re.Pattern[str]] = []
    for item in exclude:
        if isinstance(item, re.Pattern):
            patterns.append(item)
        elif item.endswith("*"):
            prefixes.append(item[:-1])
        else:
            stripped = item.rstrip("/")
            exact.add(stripped or "/")
            if stripped:  # "/" excludes the root only, not every path under it
                prefixes.append(stripped + "/")
    prefix_tuple = tuple(prefixes)

    def excluded(path: str) -> bool:
        return (
            path in exact
            or path.startswith(prefix_tuple)
            or any(p.fullmatch(path) for p in patterns)
        )

    return excluded


@final
class Tracer:
    """Configuration and the in-memory store of finished traces.

    One tracer can serve many apps and many event loops. Its store is a ring: the oldest
    trace goes when ``max_traces`` is reached.

    Args:
        max_traces: How many finished traces to keep in `traces` (a ring).
        sample_rate: Fraction of requests to trace, from 0.0 to 1.0. Requests that are not
            sampled pass through untouched.
        exclude_paths: Paths never traced: exact paths (``"/health"`` also excludes
            ``"/health/..."``), prefixes ending in ``*`` (``"/static/*"``) or compiled
            regular expressions matched against the whole path.
        slow_threshold: Seconds; when set, only requests that took at least this long are
            kept and passed to *on_trace* ("slow-only retention").
        max_events: Cap on the events of one trace; events past it are counted in
            `Trace.dropped` rather than stored.
        redact: Which headers, query parameters and variables are secret: ``None`` for the
            defaults, an iterable of extra names, a `Redactor`, or ``False`` to store
            everything (not recommended).
        on_trace: A callable, or several, called with each finished trace. One that raises
            is logged once and disabled.
        blocking_threshold: Seconds a single step may hold the event loop before it is
            recorded as ``blocked``.
        app_code: Decides from a file name whether code is the app's own (where
            ``awaiting`` events point); by default everything outside the standard
            library, site-packages and asgitrace.
        watch: Names of local variables to snapshot (bounded, redacted reprs) at each
            suspension of the app's code and, on 3.12+, when the endpoint returns.
        clock: Nanosecond monotonic clock (tests inject a fake one).
        rng: Source of floats in [0, 1) for sampling (tests inject a seeded one).

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_callbacks",
        "_excluded",
        "_rng",
        "_store",
        "app_code",
        "blocking_ns",
        "blocking_threshold",
        "clock",
        "exclude_paths",
        "max_events",
        "redactor",
        "sample_rate",
        "slow_threshold",
        "watch",
        "watcher",
    )

    def __init__(
        self,
        *,
        max_traces: int = 1000,
        sample_rate: float = 1.0,
        exclude_paths: Iterable[str | re.Pattern[str]] = (),
        slow_threshold: float | None = None,
        max_events: int = 10_000,
        redact: Redactor | Iterable[str] | bool | None = None,
        on_trace: OnTrace | Iterable[OnTrace] | None = None,
        blocking_threshold: float = 0.1,
        app_code: Callable[[str], bool] | None = None,
        watch: Iterable[str] = (),
        clock: Clock | None = None,
        rng: Callable[[], float] | None = None,
    ) -> None:
        if max_traces < 0:
            raise ValueError(f"max_traces must be >= 0, got {max_traces!r}")
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0.0 and 1.0, got {sample_rate!r}")
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events!r}")
        if slow_threshold is not None and slow_threshold < 0:
            raise ValueError(f"slow_threshold must be >= 0 seconds, got {slow_threshold!r}")
        if blocking_threshold <= 0:
            raise ValueError(f"blocking_threshold must be > 0 seconds, got {blocking_threshold!r}")
        self.sample_rate = sample_rate
        self.exclude_paths = tuple(exclude_paths)
        self._excluded = _paths_matcher(self.exclude_paths)
        self.slow_threshold = slow_threshold
        self.max_events = max_events
        self.redactor = Redactor.from_option(redact)
        self.blocking_threshold = blocking_threshold
        self.blocking_ns = int(blocking_threshold * 1e9)
        """The blocking threshold in nanoseconds (internal)."""
        self.app_code = AppCode(app_code)
        """The app-code rule, cached per code object (internal)."""
        self.watch = tuple(watch)
        self.watcher = (
            functools.partial(snapshot, self.watch, self.redactor) if self.watch else None
        )
        self.clock: Clock = clock or time.perf_counter_ns
        self._rng = rng or random.random
        # Records (see `Recorder.close`), not `Trace` objects: a ring of a thousand
        # objects the garbage collector tracks would make it run full collections
        # (tens of ms) every few seconds under load.
        self._store: deque[bytes | tuple[Any, ...]] = deque(maxlen=max_traces)
        if on_trace is None:
            self._callbacks: list[OnTrace] = []
        elif callable(on_trace):
            self._callbacks = [on_trace]
        else:
            self._callbacks = list(on_trace)

    def __repr__(self) -> str:
        return (
            f"<Tracer sample_rate={self.sample_rate} traces={len(self._store)}"
            f"/{self._store.maxlen}>"
        )

    @property
    def max_traces(self) -> int:
        """The capacity of the ring of stored traces."""
        return self._store.maxlen or 0

    @property
    def traces(self) -> list[Trace]:
        """The stored traces, oldest first (a copy)."""
        # `deque.copy` runs in C without releasing the GIL: a consistent snapshot while
        # loop threads append, with no lock for them to wait on.
        return [Trace.of_record(r) for r in self._store.copy()]

    @property
    def last(self) -> Trace | None:
        """The most recently finished trace, or ``None``."""
        try:
            record = self._store[-1]
        except IndexError:
            return None
        return Trace.of_record(record)

    def clear(self) -> None:
        """Forget every stored trace."""
        self._store.clear()

    def add_callback(self, callback: OnTrace) -> None:
        """Call *callback* with each finished trace from now on."""
        self._callbacks.append(callback)

    def remove_callback(self, callback: OnTrace) -> None:
        """Stop calling *callback* (no error if it was not registered)."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def wants(self, scope: Mapping[str, Any]) -> bool:
        """Return whether a request with this scope should be traced.

        Lifespan and unknown scope types, excluded paths and unsampled requests are not.
        """
        if scope.get("type") not in ("http", "websocket"):
            return False
        if self.exclude_paths and self._excluded(str(scope.get("path", ""))):
            return False
        return self.sample_rate >= 1.0 or self._rng() < self.sample_rate

    def recorder(self, scope: Mapping[str, Any], task: asyncio.Task[Any] | None) -> Recorder:
        """Open a recorder for a request that `wants` said to trace."""
        return Recorder(self, scope, task)

    def finished(
        self,
        record: bytes | tuple[Any, ...],
        duration_ns: int,
        unmarshalled: tuple[Any, ...] | None = None,
    ) -> None:
        """Keep a finished trace's record (unless slow-only retention drops it); call back.

        *unmarshalled* is the record before it was marshalled, when the caller has it: the
        callbacks' trace is built from it, without reading back the bytes just written.
        """
        slow = self.slow_threshold
        if slow is not None and duration_ns / 1e9 < slow:
            return
        self._store.append(record)  # atomic: no lock for the loop thread to wait on
        if not self._callbacks:
            return
        trace = Trace.of_record(record if unmarshalled is None else unmarshalled)
        for callback in tuple(self._callbacks):
            try:
                callback(trace)
            except Exception as exc:
                log_failure(f"on_trace callback {callback!r}", exc)
                self._callbacks.remove(callback)
