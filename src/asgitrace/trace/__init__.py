"""The trace model: events, task refs, code ids, the codec of raw events, source lines,
`Trace` and order matching.

It imports `asgitrace._support` only; capture writes its raw records, views read its traces.
"""

from __future__ import annotations

__all__: list[str] = []
