"""The reference example of the tutorial, as real FastAPI apps (public API only)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["blocking_app", "reference_app"]


def reference_app(delay: float = 1.0) -> FastAPI:
    """The tutorial's endpoint: ``await asyncio.sleep(1)``, then a JSON message."""
    from fastapi import FastAPI

    app = FastAPI()
    if delay == 1.0:
        # Literally the tutorial's line, so the tables quote `await asyncio.sleep(1)`.
        @app.get("/wait")
        async def wait_endpoint() -> dict[str, str]:
            await asyncio.sleep(1)
            return {"message": "Done waiting"}

    else:

        @app.get("/wait")
        async def wait_endpoint() -> dict[str, str]:
            await asyncio.sleep(delay)
            return {"message": "Done waiting"}

    return app


def blocking_app(delay: float = 1.0) -> FastAPI:
    """The same endpoint with the mistake the tutorial warns about: ``time.sleep(1)``."""
    from fastapi import FastAPI

    app = FastAPI()
    if delay == 1.0:

        @app.get("/wait")
        async def wait_endpoint() -> dict[str, str]:
            time.sleep(1)  # the mistake: blocks the event loop for a whole second
            return {"message": "Done waiting"}

    else:

        @app.get("/wait")
        async def wait_endpoint() -> dict[str, str]:
            time.sleep(delay)
            return {"message": "Done waiting"}

    return app
