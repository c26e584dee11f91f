"""``python -m asgitrace``: the ``asgitrace`` command."""

from __future__ import annotations

from asgitrace.cli import main

__all__: list[str] = []

raise SystemExit(main())
