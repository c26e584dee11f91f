"""What the compiled stepper is built from, shared by the build and the run time.

``setup.py`` loads this file by its path (the package cannot be imported while it is
being built) to stamp the compiled module with `source_hash`; ``_accel`` imports it to
check that stamp. One definition, so that the two can never hash differently. Only the
standard library here.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["SOURCES", "disabled", "source_hash"]

SOURCES = ("_stepper.py", "_stepper.pxd")
"""The files in ``capture/`` the compiled stepper is built from (the ``.pxd`` is optional)."""

_HERE = os.path.dirname(os.path.abspath(__file__))


def source_hash(folder: str = _HERE) -> str:
    """SHA-256 over the stepper's source files in *folder* (a missing file counts as empty)."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode())
        try:
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(f.read())
        except OSError:
            digest.update(b"\0missing")
    return digest.hexdigest()


def disabled() -> bool:
    """Whether ``ASGITRACE_NO_EXTENSIONS`` asks for pure Python (any value but ``""``/``0``)."""
    return os.environ.get("ASGITRACE_NO_EXTENSIONS", "") not in ("", "0")
