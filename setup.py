"""The one thing pyproject.toml cannot say: the optional compiled stepper.

``src/asgitrace/capture/_stepper.py`` is compiled by Cython (pure-Python mode, typed by
``_stepper.pxd`` when there is one) into the extension ``asgitrace.capture._cstepper``:
another name, so that ``capture/_accel.py`` can choose between the two at run time. The
copy compiled carries ``_BUILT_FROM``, the hash of the source, so that a stale extension is
detected at import (``capture/_build.py`` hashes the sources for both).

The extension is optional: ``ASGITRACE_NO_EXTENSIONS=1`` skips it, and a failing compiler
prints one line and leaves the pure-Python capture installed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import sys
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURE = os.path.join("src", "asgitrace", "capture")
FALLBACK = "asgitrace: no C compiler, installing the pure-Python capture"


def _load_build_module() -> ModuleType:
    """``capture/_build.py`` by its path: what the stepper is built from, and its hash."""
    path = os.path.join(HERE, CAPTURE, "_build.py")
    spec = importlib.util.spec_from_file_location("_asgitrace_build", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_build = _load_build_module()
source_hash = functools.partial(_build.source_hash, os.path.join(HERE, CAPTURE))
no_extensions = _build.disabled


def renamed_copy(build_temp: str) -> str:
    """``_stepper.py`` (and ``.pxd``) copied as ``_cstepper.*`` with the source hash
    appended; the path of the ``.py`` copy, which Cython compiles."""
    folder = os.path.join(build_temp, "cython", "asgitrace", "capture")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(HERE, CAPTURE, "_stepper.py"), encoding="utf-8") as f:
        text = f.read()
    target = os.path.join(folder, "_cstepper.py")
    with open(target, "w", encoding="utf-8") as f:
        f.write(text + f"\n_BUILT_FROM = {source_hash()!r}\n")
    pxd = os.path.join(HERE, CAPTURE, "_stepper.pxd")
    if os.path.exists(pxd):
        shutil.copyfile(pxd, os.path.join(folder, "_cstepper.pxd"))
    elif os.path.exists(os.path.join(folder, "_cstepper.pxd")):
        os.remove(os.path.join(folder, "_cstepper.pxd"))
    return target


class optional_build_ext(build_ext):
    """Cythonize at build time; any failure to compile leaves pure Python, with one line."""

    failed = False

    def finalize_options(self) -> None:
        # Before setuptools looks at the extensions: the placeholder becomes the real one.
        if self.distribution.ext_modules:
            try:
                self.distribution.ext_modules = cythonized()
            except Exception as exc:  # no Cython, a Cython error: pure Python
                self.fall_back(exc)
                self.distribution.ext_modules = []
        super().finalize_options()

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all (distutils' platform errors)
            self.fall_back(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # the compiler failed
            self.fall_back(exc)

    def copy_extensions_to_source(self) -> None:
        if not self.failed:  # (in place, for `pip install -e`: nothing was built to copy)
            super().copy_extensions_to_source()

    def fall_back(self, exc: Exception) -> None:
        if not self.failed:
            print(f"{FALLBACK} ({type(exc).__name__})", file=sys.stderr)
        self.failed = True


def cythonized() -> list[Extension]:
    from Cython.Build import cythonize

    source = renamed_copy(os.path.join(HERE, "build"))
    extension = Extension("asgitrace.capture._cstepper", [source])
    return cythonize(  # type: ignore[no-any-return]
        [extension],
        compiler_directives={
            "language_level": "3",
            # The annotations are for mypy; types come only from the .pxd, so the
            # compiled module behaves as the .py does.
            "annotation_typing": False,
        },
        quiet=True,
    )


# A placeholder extension: setuptools runs build_ext (and marks the wheel as platform
# specific) only when there is one; `optional_build_ext.run` replaces it.
extensions = [] if no_extensions() else [Extension("asgitrace.capture._cstepper", [])]
setup(ext_modules=extensions, cmdclass={"build_ext": optional_build_ext})
