"""Route templates keep their router prefix and mounts (issue 18)."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI

from asgitrace import TraceMiddleware, Tracer


async def test_route_templates_keep_include_router_prefix_and_mounts() -> None:
    app = FastAPI()
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    app.include_router(router, prefix="/api/v1")
    sub = FastAPI()

    @sub.get("/things/{n}")
    async def things(n: int) -> dict[str, int]:
        return {"n": n}

    app.mount("/sub", sub)

    @app.get("/plain")
    async def plain() -> dict[str, str]:
        return {}

    tracer = Tracer(blocking_threshold=1.0)
    app.add_middleware(TraceMiddleware, tracer=tracer)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for path in ("/api/v1/items/3", "/sub/things/4", "/plain"):
            assert (await http.get(path)).status_code == 200
    assert [t.route for t in tracer.traces] == [
        "/api/v1/items/{item_id}",
        "/sub/things/{n}",
        "/plain",
    ]
