"""Support code every layer may use: the logger, errors, safe reprs, redaction, ASGI type aliases.

The bottom layer: it imports the standard library only.
"""

from __future__ import annotations

__all__: list[str] = []
