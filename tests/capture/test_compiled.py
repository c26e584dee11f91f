"""The compiled stepper: which one runs, that a stale one is never used, and that neither
puts a real frame between a task and the user's coroutine.

``.ci/run`` sets ``ASGITRACE_EXPECT`` (``compiled`` or ``pure``) for each of its runs, so
that a build that silently fell back to pure Python fails CI instead of passing slower.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
import types
from typing import Any

import pytest

import asgitrace.capture
from asgitrace import Tracer
from asgitrace.capture import _accel, _stepper
from asgitrace.capture._accel import Stepper
from asgitrace.trace._events import TaskRef


def test_the_variant_is_the_one_the_environment_expects() -> None:
    expect = os.environ.get("ASGITRACE_EXPECT")
    if not expect:
        pytest.skip("ASGITRACE_EXPECT is not set (CI sets it to compiled or pure)")
    assert expect in ("compiled", "pure")
    assert asgitrace.capture.COMPILED is (expect == "compiled")


def test_every_importer_gets_the_chosen_stepper() -> None:
    from asgitrace.capture import _entry, _middleware, _taskhook

    assert Stepper is _accel.MODULE.Stepper
    assert _middleware.Stepper is Stepper
    assert _taskhook.Stepper is Stepper
    assert _middleware.ref_of is _taskhook.ref_of is _entry.ref_of is _accel.MODULE.ref_of
    assert Stepper.__module__ == _accel.MODULE.__name__


def test_a_compiled_module_is_built_from_the_source_beside_it() -> None:
    if not asgitrace.capture.COMPILED:
        pytest.skip("pure Python: no compiled stepper is loaded")
    assert _accel.MODULE.__name__ == "asgitrace.capture._cstepper"
    assert _accel.source_hash() == _accel.MODULE._BUILT_FROM


def fake_compiled(built_from: str) -> types.ModuleType:
    module = types.ModuleType("asgitrace.capture._cstepper")
    module._BUILT_FROM = built_from  # type: ignore[attr-defined]
    module.__file__ = "/somewhere/_cstepper.so"
    return module


def test_a_fresh_compiled_module_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = fake_compiled(_accel.source_hash())
    monkeypatch.delenv("ASGITRACE_NO_EXTENSIONS", raising=False)
    monkeypatch.setattr(_accel.importlib, "import_module", lambda name: fresh)
    assert _accel._choose() is fresh


@pytest.mark.parametrize("value", ["1", "yes"])
def test_no_extensions_forces_pure_python(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = fake_compiled(_accel.source_hash())
    monkeypatch.setenv("ASGITRACE_NO_EXTENSIONS", value)
    monkeypatch.setattr(_accel.importlib, "import_module", lambda name: fresh)
    assert _accel._choose() is _stepper


def test_a_zero_or_empty_no_extensions_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = fake_compiled(_accel.source_hash())
    monkeypatch.setattr(_accel.importlib, "import_module", lambda name: fresh)
    for value in ("0", ""):
        monkeypatch.setenv("ASGITRACE_NO_EXTENSIONS", value)
        assert _accel._choose() is fresh


def test_a_missing_compiled_module_means_pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise ImportError(name)

    monkeypatch.delenv("ASGITRACE_NO_EXTENSIONS", raising=False)
    monkeypatch.setattr(_accel.importlib, "import_module", missing)
    assert _accel._choose() is _stepper


def test_a_stale_compiled_module_is_not_used_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("ASGITRACE_NO_EXTENSIONS", raising=False)
    monkeypatch.setattr(_accel.importlib, "import_module", lambda name: fake_compiled("old"))
    with caplog.at_level(logging.WARNING, logger="asgitrace"):
        assert _accel._choose() is _stepper
    [record] = caplog.records
    assert "built from other source" in record.getMessage()
    assert "_cstepper.so" in record.getMessage()


def test_the_source_hash_covers_both_files_and_tolerates_a_missing_one(tmp_path: Any) -> None:
    empty = _accel.source_hash(str(tmp_path))
    (tmp_path / "_stepper.py").write_text("x = 1\n")
    one = _accel.source_hash(str(tmp_path))
    (tmp_path / "_stepper.pxd").write_text("cdef int x\n")
    both = _accel.source_hash(str(tmp_path))
    assert len({empty, one, both}) == 3
    (tmp_path / "_stepper.py").write_text("x = 2\n")
    assert _accel.source_hash(str(tmp_path)) != both


# --- invisible: what a user's code sees of the stepper ----------------------------------


def recorder() -> Any:
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    return Tracer(max_events=100).recorder(scope, None)


def own(filename: str) -> bool:
    return "asgitrace" in filename.replace("\\", "/").split("/capture/")[0] and (
        "_stepper" in filename or "_cstepper" in filename
    )


async def test_no_stepper_frame_between_the_task_and_the_coroutine() -> None:
    seen: list[str] = []

    async def user() -> None:
        await asyncio.sleep(0)
        frame: types.FrameType | None = sys._getframe()
        while frame is not None:
            seen.append(frame.f_code.co_filename)
            frame = frame.f_back

    rec = recorder()
    await asyncio.get_running_loop().create_task(Stepper(user(), None, rec, parent=TaskRef(1, "p")))
    stepper_frames = [f for f in seen if own(f)]
    # Pure Python: `Stepper.send` is one frame; compiled: none.
    assert len(stepper_frames) == (0 if asgitrace.capture.COMPILED else 1)


async def test_what_a_users_traceback_shows_of_the_stepper() -> None:
    async def user() -> None:
        await asyncio.sleep(0)
        raise ValueError("the user's error")

    rec = recorder()
    task = asyncio.get_running_loop().create_task(
        Stepper(user(), None, rec, parent=TaskRef(1, "p"))
    )
    with pytest.raises(ValueError, match="the user's error") as raised:
        await task
    entries = traceback.extract_tb(raised.value.__traceback__)
    stepper = [e for e in entries if own(e.filename)]
    assert entries[-1].name == "user"
    # Pure Python: the `send` frame the error passed through. Compiled: no frame, but Cython
    # adds two synthetic entries (its error path and the re-raise) for `Stepper.send`.
    assert [e.name.rpartition(".")[2] for e in stepper] == (
        ["send", "send"] if asgitrace.capture.COMPILED else ["send"]
    )


async def test_what_an_endpoints_traceback_shows_of_the_stepper() -> None:
    # A user's error in a FastAPI endpoint, as the ASGI server sees it: the middleware's
    # `_traced` is one entry either way; the stepper's are those counted above.
    import httpx
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        await asyncio.sleep(0)
        raise ValueError("the user's error")

    traced = asgitrace.instrument(app, tracer=Tracer())
    transport = httpx.ASGITransport(app=traced)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(ValueError, match="the user's error") as raised:
            await client.get("/boom")
    entries = traceback.extract_tb(raised.value.__traceback__)
    assert entries[-1].name == "boom"
    assert len([e for e in entries if own(e.filename)]) == (2 if asgitrace.capture.COMPILED else 1)


def test_an_edited_source_beside_a_real_extension_is_detected(tmp_path: Any) -> None:
    """The real thing, in a fresh interpreter: the package copied with its extension, one
    line of ``_stepper.py`` changed, and the pure-Python stepper is the one that runs."""
    if not asgitrace.capture.COMPILED:
        pytest.skip("pure Python: no extension to go stale")
    import shutil
    import subprocess

    package = os.path.dirname(asgitrace.__file__)
    copy = tmp_path / "asgitrace"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    source = copy / "capture" / "_stepper.py"
    source.write_text(source.read_text() + "\n# edited after the build\n")
    code = "import asgitrace.capture as c; print(c.COMPILED, c._accel.MODULE.__name__)"
    env = {k: v for k, v in os.environ.items() if k != "ASGITRACE_NO_EXTENSIONS"}
    env["PYTHONPATH"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "False asgitrace.capture._stepper\n")
    [warning] = done.stderr.splitlines()
    assert "built from other source" in warning
