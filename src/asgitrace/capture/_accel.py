"""Which `Stepper` the capture uses: the compiled one, or the pure-Python one.

The build (setup.py) compiles ``_stepper.py`` itself with Cython, under another name,
``_cstepper`` (same name, the extension would always win the import over the ``.py``).
This module chooses, once, at import:

* the compiled module, when it was built, ``ASGITRACE_NO_EXTENSIONS`` is unset (or ``0``)
  and it was built from the ``_stepper.py`` (and ``_stepper.pxd``) beside it;
* else the pure-Python ``_stepper``. A compiled module built from other source (an edited
  checkout whose extension was not rebuilt) is *stale*: it is not used, and one warning
  line says so, so that an edit is never silently shadowed by old machine code.

Every importer of the stepper (the middleware, the task hook, the entry probe) imports
`Stepper`, `ref_of` and `endpoint_code` from here, so that ``type(x) is Stepper`` checks
everywhere test the class that actually runs.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType
from typing import TYPE_CHECKING

from . import _stepper
from ._build import disabled, source_hash

__all__ = ["COMPILED", "MODULE", "Stepper", "endpoint_code", "ref_of", "source_hash"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _choose() -> ModuleType:
    if disabled():
        return _stepper
    try:
        compiled = importlib.import_module(f"{__package__}._cstepper")
    except ImportError:
        return _stepper  # not built: no C compiler, or ASGITRACE_NO_EXTENSIONS at build time
    built_from = getattr(compiled, "_BUILT_FROM", None)
    if built_from != source_hash():
        logging.getLogger("asgitrace").warning(
            "asgitrace: the compiled stepper (%s) was built from other source than %s; "
            "using the pure-Python one (rebuild: pip install -e .)",
            os.path.basename(getattr(compiled, "__file__", None) or "_cstepper"),
            os.path.join(_HERE, "_stepper.py"),
        )
        return _stepper
    return compiled


MODULE: ModuleType = _choose()
"""The stepper module in use: ``_cstepper`` (compiled) or ``_stepper`` (pure Python)."""

COMPILED: bool = MODULE is not _stepper
"""Whether the capture's hot path runs compiled."""

if TYPE_CHECKING:  # one set of types: the compiled module is the same source
    from ._stepper import Stepper, endpoint_code, ref_of
else:
    Stepper = MODULE.Stepper
    ref_of = MODULE.ref_of
    endpoint_code = MODULE.endpoint_code
