"""Bounded, exception-safe representations of user values."""

from __future__ import annotations

import reprlib
from typing import Any, Final

__all__ = ["MAX_REPR", "safe_repr"]

MAX_REPR: Final = 200
"""Default number of characters kept of any repr asgitrace stores."""

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxdict = 8
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = 8
_repr.maxstring = _repr.maxother = MAX_REPR


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
