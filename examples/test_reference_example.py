"""Testing with asgitrace: assert what the event loop did for the tutorial's endpoints.

Copy this file into your project's tests and replace ``app`` with your own app (``from
myproject.main import app``). It needs ``pip install "asgitrace[test]"`` (pytest,
pytest-asyncio and httpx); the ``asgitrace`` pytest plugin is active as soon as asgitrace
is installed.

* ``test_wait_endpoint_suspends_at_its_await`` asserts the order the tutorial's execution
  table describes: the request is received, the endpoint awaits ``asyncio.sleep``, gives
  control back to the loop, resumes, and the response is sent.
* ``test_block_endpoint_blocks_the_loop`` shows a failure: ``time.sleep`` in an ``async
  def`` endpoint holds the event loop, and ``@pytest.mark.asgitrace(max_blocking_ms=50)``
  fails the test, naming the ``time.sleep`` line. It is marked ``xfail`` here so that the
  file passes; remove that mark to read the failure message.

Run it with ``pytest examples/test_reference_example.py``, or as a script:
``python examples/test_reference_example.py``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import FastAPI

from asgitrace import Tracer
from asgitrace.pytest_plugin import AsyncClientFactory
from asgitrace.testing import assert_awaits, assert_order

app = FastAPI()


@app.get("/wait")
async def wait_endpoint() -> dict[str, str]:
    await asyncio.sleep(0.01)
    return {"message": "Done waiting"}


@app.get("/block")
async def block_endpoint() -> dict[str, str]:
    time.sleep(0.06)  # blocks the event loop: nothing else runs for 60 ms
    return {"message": "Done waiting"}


@pytest.mark.asyncio
async def test_wait_endpoint_suspends_at_its_await(
    asgitrace_client: AsyncClientFactory, asgitrace_tracer: Tracer
) -> None:
    response = await asgitrace_client(app).get("/wait")

    assert response.json() == {"message": "Done waiting"}
    trace = asgitrace_tracer.last
    assert trace is not None
    assert_order(trace, "received", "awaiting", "yielded", "resumed", "sent")
    assert_awaits(trace, "asyncio.sleep", exact=True)


@pytest.mark.xfail(reason="shows the failure message; remove this mark to read it", strict=True)
@pytest.mark.asgitrace(max_blocking_ms=50)
@pytest.mark.asyncio
async def test_block_endpoint_blocks_the_loop(asgitrace_client: AsyncClientFactory) -> None:
    await asgitrace_client(app).get("/block")


if __name__ == "__main__":
    import os
    import subprocess
    import sys

    print("Testing GET /wait and GET /block with the asgitrace pytest plugin\n", flush=True)
    # A pytest of its own, on this file only: rooted in this folder, with `-o addopts=`
    # dropping the options (coverage...) of whatever project this file sits in.
    here = os.path.dirname(os.path.abspath(__file__))
    command = [sys.executable, "-m", "pytest", __file__, "-v", "-p", "no:cacheprovider"]
    isolate = ["-o", "addopts=", "--rootdir", here, "--confcutdir", here]
    raise SystemExit(subprocess.call([*command, *isolate], cwd=here))
