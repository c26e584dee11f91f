"""Code ids: small ints that name code objects in raw records (records stay marshallable)."""

from __future__ import annotations

import itertools
from types import CodeType
from typing import Final

__all__ = ["MAX_CODES", "code_id", "code_of"]

MAX_CODES: Final = 1 << 16
"""How many distinct code objects records can name (`code_id`); past that, 0 (unknown)."""

_codes: dict[int, CodeType] = {}  # never shrinks: keeps every named code alive
_code_ids: dict[int, int] = {}
_next_code = itertools.count(1)
# Keyed by id(code), not by the code object: hashing a code object hashes its constants,
# nested functions' code included, on every lookup (measured 1.2 µs for FastAPI's request
# handler). The ids are stable: `_codes` keeps each code object alive. No lock: loop
# threads call this, and `next`, `dict.setdefault` and item assignment are atomic; two
# threads naming one code at once both get the index that `setdefault` kept.


def code_id(code: CodeType | None) -> int:
    """A small int naming *code* in raw fields (0 for none): records stay marshallable."""
    if code is None:
        return 0
    index = _code_ids.get(id(code))
    if index is None:
        if len(_codes) >= MAX_CODES:
            return 0
        index = next(_next_code)
        _codes[index] = code
        index = _code_ids.setdefault(id(code), index)
    return index


def code_of(index: int) -> CodeType | None:
    """The code object `code_id` named *index* (``None`` for 0 or an unknown index)."""
    return _codes.get(index)
