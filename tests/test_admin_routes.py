"""One admin table for both gates, and it covers every route that changes engine or volume state.

The table is read from the routes (``openapi_extra=ADMIN``), so an entry always names a real route; what can
still go wrong is a new state-changing route left unmarked. The library's own routes (profiles, samples,
history, generation, bundles, speech) are what every key holder may change; anything else that is not a
read must be admin.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from backend.api.admin import ADMIN_KEY, flat_routes
from backend.app import api_admin_table, api_routers, create_app
from backend.config import Settings
from backend.serverless.handler import JobHandler
from backend.services.container import Services

#: The library: routes any key holder (or the desktop app) may use to change profiles, samples, history and
#: generations. A new route that changes state and is not one of these must be marked admin.
USER_ROUTE = re.compile(
    r"/(profiles|samples|history|generate|audio|library|transcribe|exports|v1|settings/generation"
    r"|channels|effects|generations|stories)(/.*)?"
)
#: Upstream routes this server answers with the documented not-available shape: they change nothing.
NOT_AVAILABLE_TAG = "not available here"
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _concrete(template: str) -> str:
    """A path the template matches: each ``{param}`` becomes a plain name (jobs carry real paths)."""
    return re.sub(r"\{[^}]+\}", "some-name", template)


def _routes() -> list[APIRoute]:
    app = FastAPI()
    for router in api_routers():
        app.include_router(router)
    return [r for r in flat_routes(app.routes) if isinstance(r, APIRoute)]


def test_every_state_changing_non_library_route_is_admin() -> None:
    table = api_admin_table()
    unmarked = [
        f"{method} {route.path}"
        for route in _routes()
        for method in sorted(route.methods & STATE_CHANGING)
        if not USER_ROUTE.fullmatch(route.path)
        and NOT_AVAILABLE_TAG not in route.tags
        and (method, route.path) not in table
    ]
    assert unmarked == [], f"mark these with openapi_extra=ADMIN (backend/api/admin.py): {unmarked}"
    expected = {("POST", "/models/load"), ("POST", "/models/unload"), ("POST", "/volume/probe")}
    assert expected <= {(e.method, e.path) for e in table.routes}


def test_every_admin_entry_is_a_real_route_and_in_the_spec() -> None:
    paths = {(m, r.path) for r in _routes() for m in r.methods}
    app = FastAPI()
    for router in api_routers():
        app.include_router(router)
    spec = app.openapi()["paths"]
    table = api_admin_table()
    assert table.routes
    for entry in table.routes:
        assert (entry.method, entry.path) in paths
        assert spec[entry.path][entry.method.lower()][ADMIN_KEY] is True


def test_both_gates_refuse_every_admin_route(api_settings: Settings, tmp_path: Path) -> None:
    """The key gate (standalone) and the job gate (RunPod) use the same table: a user key is 403, a job is
    refused, for every entry."""
    table = api_admin_table()
    settings = api_settings.with_overrides(api_keys=("user",), admin_keys=("admin",))
    services = Services.for_worker(settings)
    try:
        app = create_app(settings, services=services)
        with TestClient(app, base_url="http://127.0.0.1:17493") as client:
            for entry in table.routes:
                r = client.request(
                    entry.method, _concrete(entry.path), headers={"Authorization": "Bearer user"}
                )
                assert r.status_code == 403 and "admin route" in r.json()["detail"], entry

        async def jobs() -> list[dict]:
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
            handler = JobHandler(settings, base_url="http://127.0.0.1:1", client=http)
            try:
                return [
                    await handler(
                        {"id": "j", "input": {"method": e.method, "path": _concrete(e.path)}}
                    )
                    for e in table.routes
                ]
            finally:
                await http.aclose()

        for answer in asyncio.run(jobs()):
            assert "admin route" in answer["error"], answer
    finally:
        services.close()
