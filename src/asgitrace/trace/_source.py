"""Source lines: the text of a line of code, and the expression an ``await`` awaits.

Read lazily, when a view decodes an event (`asgitrace.trace.codec`), through `linecache`.
"""

from __future__ import annotations

import io
import linecache
import tokenize

__all__ = ["source_line", "target_from_source"]


def source_line(filename: str, lineno: int | None) -> str:
    """The stripped source line without its comment, or ``""`` when it cannot be read."""
    if not lineno:
        return ""
    return _without_comment(linecache.getline(filename, lineno).strip())


def _without_comment(line: str) -> str:
    if "#" not in line:
        return line
    try:
        for token in tokenize.generate_tokens(io.StringIO(line).readline):
            if token.type == tokenize.COMMENT:
                return line[: token.start[1]].rstrip()
    except (tokenize.TokenError, SyntaxError):  # an unfinished line (a multi-line call)
        pass
    return line


def target_from_source(text: str) -> str | None:
    """The awaited expression of a source line: ``x = f(await g(1))`` → ``g(1)``.

    It ends where a bracket closes that it did not open, or at a top-level ``,``/``:``.
    """
    index = text.find("await ")
    if index < 0:
        return None
    rest = text[index + len("await ") :]
    depth = 0
    quote = ""
    for position, char in enumerate(rest):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                rest = rest[:position]
                break
            depth -= 1
        elif char in ",:" and depth == 0:
            rest = rest[:position]
            break
    return rest.strip() or None
