"""Markdown: the one table writer of the markdown views (`explain`, the summary)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["md_cell", "md_table"]


def md_cell(text: str) -> str:
    """*text* as a markdown table cell: ``|`` escaped, on one line."""
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a markdown table (cells escaped with `md_cell`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows)
    return lines
