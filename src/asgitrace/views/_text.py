"""Text helpers shared by the views: durations, sizes, short names, where an event was."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ..trace import Event

__all__ = [
    "NONE",
    "UNKNOWN",
    "blocked_by_text",
    "fmt_bytes",
    "fmt_duration",
    "is_sleep",
    "printable",
    "short_name",
    "target_of",
    "where_of",
]

NONE: Final = "None"
UNKNOWN: Final = "—"


def fmt_duration(ns: float | None) -> str:
    """``1.001 s``, ``12.3 ms``, ``45 µs``."""
    if ns is None:
        return UNKNOWN
    if ns >= 1e9:
        return f"{ns / 1e9:.3f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.0f} µs"


def fmt_bytes(n: int) -> str:
    """``27 B``, ``4.1 KiB``, ``2.0 MiB``."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def short_name(qualname: str | None) -> str:
    """``reference_app.<locals>.wait_endpoint`` → ``wait_endpoint``."""
    if not qualname:
        return "endpoint"
    return qualname.rsplit(".", 1)[-1]


def where_of(event: Event) -> str:
    file = event.get("file")
    return f"{os.path.basename(file)}:{event.get('line')}" if file else ""


def target_of(event: Event) -> str:
    target = str(event.get("target") or "?")
    return target.removesuffix(" (cooperative yield)")


def is_sleep(target: str) -> bool:
    return target.startswith(("asyncio.sleep(", "sleep(", "anyio.sleep("))


def printable(text: str) -> str:
    """*text* with control characters escaped, so a request path cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def blocked_by_text(resumed: Event) -> str:
    """How much of a wait was other requests' blocking, and whose: ``""`` when none.

    ``"300 ms of it was GET /slow (trace 1a2b…) blocking the loop at app.py:12 in slow"``
    """
    blockers = resumed.get("blocked_by") or ()
    if not blockers:
        return ""
    total = sum(int(b.get("duration_ns") or 0) for b in blockers)
    worst = max(blockers, key=lambda b: int(b.get("duration_ns") or 0))
    file = worst.get("file")
    where = f" at {os.path.basename(file)}:{worst.get('line')}" if file else ""
    function = f" in {worst['function']}" if worst.get("function") else ""
    who = f"{worst.get('method') or ''} {worst.get('path') or ''}".strip() or "another request"
    more = f" (and {len(blockers) - 1} more)" if len(blockers) > 1 else ""
    return (
        f"{fmt_duration(total)} of it was {who} (trace {worst.get('trace_id')})"
        f" blocking the loop{where}{function}{more}"
    )
