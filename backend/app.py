"""The FastAPI application: ``create_app(settings, *, services=None)``.

Why the app never bootstraps the volume: the caller does (``voicebox-worker serve``, the RunPod launcher, the
test fixtures), once, before building the app — so building an app is cheap and side-effect free, and the
lifespan needs no GPU and no network. Services are built here only when none are given.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from backend.api.admin import AdminTable, admin_table
from backend.api.auth import install_api_keys
from backend.api.errors import install_error_handlers
from backend.config import Settings
from backend.http_guard import APP_ORIGINS, GuardMiddleware, OriginPolicy
from backend.schemas import ERROR_RESPONSES
from backend.services.container import Services
from backend.services.health import VERSION
from backend.storage.retention import EXPIRY_INTERVAL_SECONDS, expire_exports

log = logging.getLogger("voicebox.app")


def api_routers() -> list[APIRouter]:
    """Every router of the API, in registration order."""
    from backend.api import (
        app_settings,
        channels,
        effects,
        exports,
        generation,
        history,
        library,
        maintenance,
        models,
        openai_compat,
        profiles,
        stories,
        streaming,
        system,
        transcribe,
        unavailable,
        volume,
    )

    routers: list[APIRouter] = [
        # ---- ROUTERS: the one place routes are registered; adding one is a one-line change ----
        system.router,
        profiles.router,
        history.router,
        library.router,
        streaming.router,  # before generation's /generate/{id}/... paths (no overlap; kept apart anyway)
        generation.router,
        effects.router,
        stories.router,
        transcribe.router,
        models.router,
        exports.router,
        openai_compat.router,
        volume.router,
        maintenance.router,
        app_settings.router,
        channels.router,
        unavailable.router,  # last: Voicebox routes answered as "not available here"
        # ---- end of ROUTERS ----
    ]
    return routers


def api_admin_table() -> AdminTable:
    """The admin table of the whole API, from its routers (no app, no volume needed)."""
    return admin_table(route for router in api_routers() for route in router.routes)


def install_origin_guard(app: FastAPI, settings: Settings) -> OriginPolicy:
    """CORS for the desktop app's origins (plus ``VOICEBOX_CORS_ORIGINS``), and outside it the guard that
    answers 403 to any other ``Origin`` and to a rebinding ``Host`` (``backend/http_guard.py`` says why).

    ``*`` is honoured only when set explicitly, with a warning: it lets every web page the user visits read
    and change the library.
    """
    origins = (*APP_ORIGINS, *settings.cors_origins)
    if settings.cors_any_origin:
        log.warning(
            "VOICEBOX_CORS_ORIGINS=*: any web page may call this server from the browser "
            "(and read or delete the library); list the origins you need instead"
        )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"] if settings.cors_any_origin else list(origins),
        allow_methods=["*"],
        allow_headers=["*"],
    )
    policy = OriginPolicy.build(
        origins,
        any_origin=settings.cors_any_origin,
        hosts=(settings.host, *settings.allowed_hosts),
        what="this voicebox-worker server",
    )
    app.add_middleware(GuardMiddleware, policy=policy)  # added last: the outermost layer
    return policy


async def _expire_exports_periodically(settings: Settings) -> None:
    """``VOICEBOX_EXPORT_TTL_HOURS`` while serving (boot runs it through fsck); never stops on an error."""
    while True:
        await asyncio.sleep(EXPIRY_INTERVAL_SECONDS)
        try:
            await asyncio.to_thread(expire_exports, settings)
        except OSError:
            log.exception("export retention failed; retrying in %.0f s", EXPIRY_INTERVAL_SECONDS)


def create_app(settings: Settings, *, services: Services | None = None) -> FastAPI:
    """The app over an already bootstrapped volume; ``services`` lets tests and the worker's launcher inject engines."""
    owned = services is None
    services = services or Services.create(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("voicebox-worker %s ready (worker %s)", VERSION, settings.worker_id)
        expiry = asyncio.create_task(_expire_exports_periodically(settings))
        try:
            yield
        finally:
            expiry.cancel()
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
    install_error_handlers(app)
    for router in api_routers():
        app.include_router(router, responses=ERROR_RESPONSES)
    install_api_keys(app, settings)  # reads the admin table from app.routes; CORS wraps it
    install_origin_guard(app, settings)
    return app
