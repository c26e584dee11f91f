"""What one raw event says, in a few words: the one description the views share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..trace import Event, EventKind
from ._text import fmt_bytes, fmt_duration

__all__ = ["describe_event"]


def describe_event(event: Event) -> str:
    """A short phrase for one raw event: ``GET /wait HTTP/1.1``, ``http.response.start, 200``.

    The one description of a raw event, for every view that lists events as they are:
    the event table's Details column and the names of Perfetto's instants (which put
    the kind in front). It leaves the kind out, which those views show on their own.
    """
    f: Mapping[str, Any] = event.fields
    kind = event.kind
    if kind is EventKind.RECEIVED and "path" in f:
        version = f" HTTP/{f['http_version']}" if "http_version" in f else ""
        return f"{str(f.get('method', f.get('type', ''))).upper()} {f['path']}{version}"
    if kind in (EventKind.RECEIVED, EventKind.SENT, EventKind.DISCONNECTED):
        parts = [str(f.get("type", ""))]
        if "status" in f:
            parts.append(str(f["status"]))
        if "body_bytes" in f:
            parts.append(fmt_bytes(f["body_bytes"]))
        if "text_chars" in f:
            parts.append(f"{f['text_chars']} chars")
        if f.get("more_body"):
            parts.append("more to come")
        if "code" in f:
            parts.append(f"code {f['code']}")
        return ", ".join(parts)
    if kind in (EventKind.ENTERED, EventKind.RETURNED) and f.get("function"):
        return str(f["function"])
    if kind is EventKind.AWAITING:
        where = f" at {f.get('function')} line {f.get('line')}" if f.get("function") else ""
        return f"{f.get('target')}{where}"
    if kind is EventKind.RESUMED:
        return f"waited {fmt_duration(f.get('waited_ns'))}, lag {fmt_duration(f.get('lag_ns'))}"
    if kind is EventKind.BLOCKED:
        return f"{fmt_duration(f.get('duration_ns'))} at line {f.get('line')}: {f.get('code')}"
    if kind is EventKind.FAILED:
        return f"{f.get('exception')}" + (f" after {f['status']}" if f.get("status") else "")
    if kind in (EventKind.COMPLETED, EventKind.CANCELLED):
        return f"status {f['status']}" if f.get("status") is not None else ""
    return ", ".join(f"{k}={v}" for k, v in f.items() if k not in ("stack", "file"))
