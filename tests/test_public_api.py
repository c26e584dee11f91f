"""The public surface: what ``import asgitrace`` exports, and what it does not import."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from textwrap import dedent

import asgitrace


def fresh_interpreter(code: str) -> str:
    """Run *code* in a new Python (nothing imported yet) and return what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", dedent(code)], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_all_lists_every_public_name_sorted() -> None:
    # In a fresh interpreter, so that submodules imported by other tests do not count.
    public = json.loads(
        fresh_interpreter(
            """\
            import __future__, json, asgitrace
            # The layer subpackages (trace, capture, views, ...) are how the package is
            # built, not names to import from `asgitrace`: a package has a __path__.
            names = [
                name
                for name, value in vars(asgitrace).items()
                if not name.startswith("_")
                and not isinstance(value, __future__._Feature)
                and not hasattr(value, "__path__")
            ]
            names.append("__version__")
            print(json.dumps(sorted(names)))
            """
        )
    )

    assert asgitrace.__all__ == public
    assert asgitrace.__all__ == sorted(asgitrace.__all__)


def test_every_exported_name_exists() -> None:
    missing = [name for name in asgitrace.__all__ if not hasattr(asgitrace, name)]

    assert missing == []


def test_exported_classes_and_functions_claim_the_public_module() -> None:
    objects = {name: getattr(asgitrace, name) for name in asgitrace.__all__}
    modules = {
        name: obj.__module__
        for name, obj in objects.items()
        if (isinstance(obj, type) or inspect.isfunction(obj)) and obj.__module__ != "asgitrace"
    }

    assert modules == {}
    assert "print_trace" in objects  # the check above saw functions as well as classes


def test_version_is_a_string() -> None:
    assert isinstance(asgitrace.__version__, str)
    assert asgitrace.__version__ != ""


def test_import_does_not_pull_in_test_or_web_frameworks() -> None:
    loaded = json.loads(
        fresh_interpreter(
            """\
            import json, sys
            import asgitrace
            heavy = ("pytest", "_pytest", "fastapi", "starlette", "uvicorn", "httpx", "anyio")
            print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
            """
        )
    )

    assert loaded == []


def test_import_does_not_install_anything_on_the_event_loop() -> None:
    factory = fresh_interpreter(
        """\
        import asyncio
        import asgitrace

        async def main():
            print(asyncio.get_running_loop().get_task_factory())

        asyncio.run(main())
        """
    )

    assert factory == "None\n"
