"""``python -m asgitrace.cli``: the ``asgitrace`` command, as ``python -m asgitrace``."""

from __future__ import annotations

from asgitrace.cli import main

__all__: list[str] = []

raise SystemExit(main())
