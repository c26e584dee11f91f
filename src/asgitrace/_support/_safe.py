"""Bounded, exception-safe representations of user values."""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import Any, Final, final

__all__ = [
    "ATOMS",
    "ATOM_KEYS",
    "ATOM_REPRS",
    "FILL",
    "ITEMS",
    "KEYS",
    "MAX_DIGITS",
    "MAX_ITEMS",
    "MAX_LEVEL",
    "MAX_REPR",
    "More",
    "Shape",
    "cut_middle",
    "int_repr",
    "other_repr",
    "safe_repr",
    "str_repr",
    "text_keys",
    "type_name",
]

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


# The types `Redactor.repr_of` tells apart.
ATOMS: Final = (str, bytes, int, float)
ATOM_KEYS: Final = (str, int, float, bytes, bool)
KEYS: Final = frozenset({str, int})
ITEMS: Final = (list, tuple, set, frozenset)


@final
class More:
    """The "… N more" entry of a long mapping (a marker, never a user value)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def text_keys(value: dict[Any, Any]) -> bool:
    for key in value:  # noqa: SIM110 - a loop: all() over a generator costs more here
        if type(key) is not str:
            return False
    return True


def cut_middle(text: str, size: int) -> str:
    head = max(0, (size - 3) // 2)
    tail = max(0, size - 3 - head)
    return text[:head] + FILL + text[len(text) - tail :]


def str_repr(value: str) -> str:
    text = repr(value[:MAX_REPR])
    if len(text) <= MAX_REPR:
        return text
    head = max(0, (MAX_REPR - 3) // 2)
    tail = max(0, MAX_REPR - 3 - head)
    return cut_middle(repr(value[:head] + value[len(value) - tail :]), MAX_REPR)


def int_repr(value: int) -> str:
    text = repr(value)
    return text if len(text) <= MAX_DIGITS else cut_middle(text, MAX_DIGITS)


def plain_repr(value: Any) -> str:
    return repr(value)  # None, True, 1.5: short, and no user code


def other_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} instance at {id(value):#x}>"
    return text if len(text) <= MAX_REPR else cut_middle(text, MAX_REPR)


ATOM_REPRS: Final[dict[type, Callable[[Any], str]]] = {
    str: str_repr,
    int: int_repr,
    float: plain_repr,
    bool: plain_repr,
    type(None): plain_repr,
}


def type_name(cls: type) -> str:
    return f"<{cls.__module__}.{cls.__qualname__} object>"


@final
class Shape:
    """A user object as asgitrace stores it: its class name and (redacted) fields."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: dict[Any, Any] | None) -> None:
        self.name = name
        self.fields = fields

    def __repr__(self) -> str:
        if self.fields is None:
            return self.name
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"{self.name}({inner})"
