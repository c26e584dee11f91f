"""The rich look shared by the views' renderables: theme, styles, boxes, safe text.

A module of its own so that each renderable module (`_render`, `_table`, `_summary`)
draws with the same styles and the same escaping of text from a trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from rich import box
from rich.console import Console, ConsoleOptions
from rich.style import Style
from rich.text import Text
from rich.theme import Theme

from ..trace import request_label
from ._text import fmt_duration

if TYPE_CHECKING:
    from ..trace import Trace

__all__ = ["THEME"]

_STYLES: Final[Mapping[str, str]] = {
    "asgitrace.title": "bold",
    "asgitrace.blocked": "bold red",
    "asgitrace.failed": "bold red",
    "asgitrace.cancelled": "yellow",
    "asgitrace.disconnected": "yellow",
    "asgitrace.child": "magenta",
    "asgitrace.thread": "blue",
    "asgitrace.loop": "dim",
    "asgitrace.after": "dim italic",
    "asgitrace.awaited": "cyan",
    "asgitrace.running": "green",
    "asgitrace.awaiting": "cyan",
    "asgitrace.time": "dim",
    "asgitrace.approx": "dim italic",
}
THEME: Final = Theme(dict(_STYLES))
"""The default styles; pass ``Console(theme=asgitrace.THEME)`` or override any name."""


_CONTROL: Final = {
    code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0)) if code != 0x0A
}


def _t(text: str, style: Style | str = "") -> Text:
    """Text from a trace, shown literally: no rich markup, no terminal control characters.

    Paths, headers and reprs come from clients and apps; ``[red]`` or ``\\x1b[2J`` in
    them must not style or clear the reader's terminal.
    """
    return Text(text.translate(_CONTROL), style=style)


def _style(console: Console, name: str) -> Style:
    return console.get_style(f"asgitrace.{name}", default=_STYLES.get(f"asgitrace.{name}", ""))


def _box(ascii_only: bool, options: ConsoleOptions) -> box.Box:
    if ascii_only or options.ascii_only:
        return box.ASCII
    return box.SIMPLE_HEAD


def _heading(trace: Trace) -> str:
    method = request_label(trace)
    status = trace.status if trace.status is not None else "-"
    route = f" (route {trace.route})" if trace.route and trace.route != trace.path else ""
    return (
        f"{method} {trace.path}{route} → {status} in {fmt_duration(trace.duration_ns)}"
        f" · {trace.outcome}"
    )


def _ms(ns: int | None) -> str:
    return "" if ns is None else f"{ns / 1e6:.1f}"
