"""Bounded, exception-safe representations of user values."""

from __future__ import annotations

import reprlib
from typing import Any, Final

__all__ = ["FILL", "MAX_DIGITS", "MAX_ITEMS", "MAX_LEVEL", "MAX_REPR", "safe_repr"]

MAX_REPR: Final = 200
"""Default number of characters kept of any repr asgitrace stores (and of one string
or other object inside a container)."""
MAX_LEVEL: Final = 3
"""Container levels shown; deeper containers show as ``[...]``."""
MAX_ITEMS: Final = 8
"""Items shown per container; more are shown as ``...``."""
MAX_DIGITS: Final = 40
"""Characters kept of an int's repr."""
FILL: Final = "..."
"""What stands for the items, levels or characters left out (reprlib's own)."""

# `Redactor.repr_of` applies these same settings to redacted values in one pass.
_repr = reprlib.Repr()
_repr.maxlevel = MAX_LEVEL
_repr.maxdict = MAX_ITEMS
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = MAX_ITEMS
_repr.maxstring = _repr.maxother = MAX_REPR
_repr.maxlong = MAX_DIGITS


def safe_repr(value: Any, limit: int = MAX_REPR) -> str:
    """Return ``repr(value)``, truncated to *limit* characters, never raising.

    Containers are abbreviated level by level (`reprlib`), so a huge dict costs no more
    than a small one; a ``__repr__`` that raises gives a placeholder naming its type.
    """
    try:
        text = _repr.repr(value)
    except Exception as exc:
        return f"<{type(value).__qualname__} object; repr failed: {type(exc).__name__}>"
    if len(text) > limit:
        return text[: max(limit - 1, 0)] + "…"
    return text
