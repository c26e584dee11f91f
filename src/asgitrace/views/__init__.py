"""Views, for people: text helpers, execution steps, the tracker, timeline, key moments,
summary, rich renderables, markdown and HTML.

Pure functions of finished traces (`asgitrace.trace`); nothing here imports capture.
"""

from __future__ import annotations

__all__: list[str] = []
