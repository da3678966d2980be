"""Model routes: what is configured, cached and loaded; load and unload on demand (Voicebox's shapes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from backend.api.admin import ADMIN
from backend.services.errors import ConflictError

router = APIRouter(tags=["models"])


def _engines(request: Request):  # type: ignore[no-untyped-def]
    engines = request.app.state.services.engines
    if engines is None:
        raise ConflictError("no engines are configured on this worker")
    return engines


@router.get("/models/status")
def models_status(request: Request) -> dict[str, Any]:
    return _engines(request).status()


@router.post("/models/load", openapi_extra=ADMIN)
def models_load(request: Request, model_size: str | None = None) -> dict[str, Any]:
    engines = _engines(request)
    engines.load_all()
    return {"message": "models loaded", "status": engines.status()}


@router.post("/models/unload", openapi_extra=ADMIN)
def models_unload(request: Request) -> dict[str, Any]:
    engines = _engines(request)
    if engines.settings.serverless:
        raise ConflictError("models stay loaded in serverless mode (SERVERLESS=1)")
    engines.unload()
    return {"message": "models unloaded"}
