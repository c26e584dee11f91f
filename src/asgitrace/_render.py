"""rich renderables of traces; the only module that imports rich."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ._events import Event, EventKind

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ._trace import Trace

__all__ = ["describe_event", "print_trace", "render_events", "render_trace"]

_KIND_STYLE = {
    EventKind.BLOCKED: "bold red",
    EventKind.FAILED: "bold red",
    EventKind.CANCELLED: "yellow",
    EventKind.DISCONNECTED: "yellow",
    EventKind.AWAITING: "cyan",
    EventKind.COMPLETED: "green",
}


def _size(n: int) -> str:
    return f"{n} B" if n < 10_000 else f"{n / 1024:.1f} KiB"


def describe_event(event: Event) -> str:
    """A short human sentence for one event's fields."""
    f: Mapping[str, Any] = event.fields
    kind = event.kind
    if kind is EventKind.RECEIVED and "path" in f:
        version = f" HTTP/{f['http_version']}" if "http_version" in f else ""
        return f"{f.get('method', f.get('type', '')).upper()} {f['path']}{version}"
    if kind in (EventKind.RECEIVED, EventKind.SENT, EventKind.DISCONNECTED):
        parts = [str(f.get("type", ""))]
        if "status" in f:
            parts.append(str(f["status"]))
        if "body_bytes" in f:
            parts.append(_size(f["body_bytes"]))
        if "text_chars" in f:
            parts.append(f"{f['text_chars']} chars")
        if f.get("more_body"):
            parts.append("more to come")
        if "code" in f:
            parts.append(f"code {f['code']}")
        return ", ".join(parts)
    if kind is EventKind.FAILED:
        return f"{f.get('exception')}" + (f" after {f['status']}" if f.get("status") else "")
    if kind in (EventKind.COMPLETED, EventKind.CANCELLED):
        return f"status {f['status']}" if f.get("status") is not None else ""
    return ", ".join(f"{k}={v}" for k, v in f.items())


def render_events(trace: Trace) -> Table:
    """A table of a trace's raw events: order, time offset, task, kind and details."""
    method = trace.method or trace.type.upper()
    title = f"{method} {trace.path} → {trace.status or '-'} in {trace.duration * 1e3:.1f} ms"
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("#", justify="right")
    table.add_column("+ms", justify="right")
    table.add_column("task")
    table.add_column("event")
    table.add_column("details", overflow="fold")
    for index, event in enumerate(trace.events, 1):
        offset = (event.t_ns - trace.start_ns) / 1e6
        table.add_row(
            str(index),
            f"{offset:.3f}",
            event.task.name,
            Text(event.kind.value, style=_KIND_STYLE.get(event.kind, "")),
            describe_event(event),
        )
    if trace.dropped:
        table.caption = f"{trace.dropped} event(s) dropped (max_events)"
    return table


def render_trace(trace: Trace) -> RenderableType:
    """The renderable `Trace.__rich__` returns."""
    return Group(render_events(trace))


def print_trace(trace: Trace, console: Console | None = None) -> None:
    """Print a trace to *console* (the terminal by default).

    .. versionadded:: 0.1
    """
    (console or Console()).print(render_trace(trace))
