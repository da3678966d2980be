"""The FastAPI application: ``create_app(settings, *, services=None)``.

Why the app never bootstraps the volume: the caller does (``voicebox-worker serve``, the RunPod launcher, the
test fixtures), once, before building the app — so building an app is cheap and side-effect free, and the
lifespan needs no GPU and no network. Services are built here only when none are given.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from backend.api.auth import install_api_keys
from backend.api.errors import install_error_handlers
from backend.config import Settings
from backend.services.container import Services
from backend.services.health import VERSION

log = logging.getLogger("voicebox.app")


def api_routers() -> list[APIRouter]:
    """Every router of the API, in registration order."""
    from backend.api import (
        exports,
        generation,
        history,
        library,
        models,
        openai_compat,
        profiles,
        system,
        transcribe,
        volume,
    )

    routers: list[APIRouter] = [
        # ---- ROUTERS: the one place routes are registered; adding one is a one-line change ----
        system.router,
        profiles.router,
        history.router,
        library.router,
        generation.router,
        transcribe.router,
        models.router,
        exports.router,
        openai_compat.router,
        volume.router,
        # ---- end of ROUTERS ----
    ]
    return routers


def create_app(settings: Settings, *, services: Services | None = None) -> FastAPI:
    """The app over an already bootstrapped volume; ``services`` lets tests and the lead inject engines."""
    owned = services is None
    services = services or Services.create(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("voicebox-worker %s ready (worker %s)", VERSION, settings.worker_id)
        try:
            yield
        finally:
            pool = getattr(_app.state, "cheap_pool", None)
            if pool is not None:
                pool.shutdown(wait=False)
            if owned:
                services.close()

    app = FastAPI(
        title="voicebox-worker",
        version=VERSION,
        description="Voicebox-compatible TTS server; see docs/api.md for differences from Voicebox.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.settings = settings
    install_api_keys(
        app, settings
    )  # before CORS: CORS stays outermost (preflights, headers on 401)
    # Voicebox answers any origin without credentials; the desktop app runs from tauri:// or localhost.
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"]
    )
    install_error_handlers(app)
    for router in api_routers():
        app.include_router(router)
    return app
