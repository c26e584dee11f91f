"""A griffe extension for the docs build: render Sphinx ``.. versionadded::`` lines.

asgitrace's docstrings follow Napoleon (Google style) and tag public additions with
``.. versionadded:: X.Y``, which mkdocstrings' Google parser would show verbatim. This
turns each such line into an admonition. Used by ``mkdocs.yml``; not part of the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_DIRECTIVE = re.compile(
    r"^(?P<indent>[ \t]*)\.\. (?P<kind>versionadded|versionchanged|deprecated):: *(?P<version>\S+)"
    r"(?P<text>[^\n]*)$",
    re.MULTILINE,
)
_TITLES = {
    "versionadded": "Added in",
    "versionchanged": "Changed in",
    "deprecated": "Deprecated in",
}
_STYLES = {"versionadded": "info", "versionchanged": "note", "deprecated": "warning"}


def _replace(match: re.Match[str]) -> str:
    kind = match["kind"]
    text = match["text"].strip()
    body = f"\n{match['indent']}    {text}" if text else ""
    title = f"{_TITLES[kind]} version {match['version']}"
    return f'{match["indent"]}!!! {_STYLES[kind]} "{title}"{body}'


class VersionAdded(griffe.Extension):
    """Rewrite version directives in every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ".. " in obj.docstring.value:
            obj.docstring.value = _DIRECTIVE.sub(_replace, obj.docstring.value)
