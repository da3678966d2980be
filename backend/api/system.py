"""``GET /`` and ``GET /health``."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, FastAPI, Request, Response

from backend.schemas import HealthResponse, RootResponse
from backend.services.container import Services
from backend.services.health import VERSION, health_info

router = APIRouter(tags=["system"])


@router.get("/", response_model=RootResponse)
def root() -> RootResponse:
    return RootResponse(
        message="voicebox-worker: a Voicebox-compatible TTS server", version=VERSION
    )


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> HealthResponse:
    """Answered on its own small thread pool, so it never waits behind generation or a busy request pool
    (and takes no sync dependency, which would run on that shared pool)."""
    services: Services = request.app.state.services
    loop = asyncio.get_running_loop()
    info = await loop.run_in_executor(
        cheap_pool(request.app), health_info, services.settings, services.db, services.engines
    )
    return HealthResponse(**info)


@router.head("/health", include_in_schema=False)
async def health_head() -> Response:
    """``HEAD /health`` answers as ``GET /health`` does (200, no key needed), without computing a body."""
    return Response(status_code=200, media_type="application/json")


def cheap_pool(app: FastAPI) -> ThreadPoolExecutor:
    """The app's pool for cheap answers (health), created on first use and shut down with the app."""
    pool = getattr(app.state, "cheap_pool", None)
    if pool is None:
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cheap")
        app.state.cheap_pool = pool
    return pool
