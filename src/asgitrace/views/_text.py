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
    "fit_widths",
    "fmt_bytes",
    "fmt_duration",
    "is_sleep",
    "place",
    "printable",
    "short_expression",
    "short_name",
    "short_path",
    "short_task",
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


def short_task(name: str) -> str:
    """A task's name as a reader knows it: ``Task-3`` stays, a library's inner function
    becomes the name its user wrote
    (``starlette.responses.StreamingResponse.__call__.<locals>.wrap`` → ``StreamingResponse``,
    ``anyio._core._sockets.connect_tcp.<locals>.try_connect`` → ``connect_tcp``)."""
    if "." not in name:
        return name
    outer = name.split(".<locals>.", 1)[0]
    parts = [p for p in outer.split(".") if p and not (p.startswith("__") and p.endswith("__"))]
    return parts[-1] if parts else name


PLACE_WIDTH: Final = 32
"""The most cells a place's path takes before it is shortened from the left."""


def short_path(path: str) -> str:
    """*path* relative to the working directory when it lies below it, else unchanged.

    A reader finds ``app/api/routes/tags.py`` in their project; a bare ``tags.py`` may
    be any of three files.
    """
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith(os.pardir) else relative


def place(file: object, line: object, width: int = PLACE_WIDTH) -> str:
    """``app/api/routes/tags.py:17``: where a line is, as the views write it.

    The path is `short_path`'s; a longer one than *width* (a library outside the
    project) keeps its last folders whole, behind ``…/``. ``""`` when there is no file.
    """
    if not file:
        return ""
    path = short_path(str(file))
    parts = path.replace(os.sep, "/").split("/")
    while len(parts) > 1 and len(path) > width:
        parts = parts[1:]
        path = "…/" + "/".join(parts)
    return f"{path}:{line}"


def where_of(event: Event) -> str:
    return place(event.get("file"), event.get("line"))


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


SHORT: Final = 20
"""A cell this long or shorter is kept on one line when half the spare room allows."""
GAP: Final = 3
"""Cells between two columns of a table without edges: padding, divider, padding."""


def fit_widths(
    header: list[str],
    rows: list[list[str]],
    available: int,
    gap: int = GAP,
    weights: list[int] | None = None,
) -> list[int] | None:
    """Column widths that fit *available* cells without cutting a word, or ``None``.

    Each column gets at least its longest word and at most its longest cell; the room
    left over goes first to the columns that need no more than a fair share to stay on
    one line, then evenly to the rest (the narrowest first, widths counted against
    *weights* when given).
    """
    columns = list(zip(header, *rows, strict=True))
    least = [
        max(len(word) for cell in column for word in cell.split() or [""]) for column in columns
    ]
    most = [max(len(cell) for cell in column) for column in columns]
    room = available - gap * (len(columns) - 1)
    if sum(least) > room:
        return None
    widths = list(least)
    spare = room - sum(widths)
    lacking = {i for i in range(len(columns)) if widths[i] < most[i]}
    while spare > 0 and lacking:
        fair = spare // len(lacking)
        gave = False
        for i in sorted(lacking, key=lambda i: (most[i] - widths[i], i)):
            lack = most[i] - widths[i]
            # A column that fits on one line within a fair share (or a short one within
            # half of what is left) gets all it needs.
            if lack <= min(fair, spare) or (most[i] <= SHORT and lack <= spare // 2):
                spare -= lack
                widths[i] = most[i]
                lacking.discard(i)
                gave = True
                break
        if gave:
            continue
        # The rest: level them up (a heavier column grows faster).
        i = min(lacking, key=lambda i: (widths[i] / (weights[i] if weights else 1), i))
        widths[i] += 1
        spare -= 1
        if widths[i] >= most[i]:
            lacking.discard(i)
    return widths


def short_expression(target: str, limit: int = 28) -> str:
    """``asyncio.gather(*(fetch(i) for i in range(3)))`` → ``asyncio.gather(…)``."""
    if len(target) <= limit or "(" not in target:
        return target
    return target.split("(", 1)[0] + "(…)"


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
    where = f" at {place(file, worst.get('line'))}" if file else ""
    function = f" in {worst['function']}" if worst.get("function") else ""
    who = f"{worst.get('method') or ''} {worst.get('path') or ''}".strip() or "another request"
    more = f" (and {len(blockers) - 1} more)" if len(blockers) > 1 else ""
    return (
        f"{fmt_duration(total)} of it was {who} (trace {worst.get('trace_id')})"
        f" blocking the loop{where}{function}{more}"
    )
