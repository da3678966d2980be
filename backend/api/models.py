"""Model routes in Voicebox's shapes: the Models page (catalogue, cache status, downloads with progress), load,
unload and delete. The catalogue and downloads live in ``services/model_management.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from backend.api.admin import ADMIN
from backend.api.deps import get_services
from backend.api.generation import SSE_HEADERS
from backend.engines.base import Engines
from backend.services.container import Services
from backend.services.errors import ConflictError

router = APIRouter(tags=["models"])

#: seconds between progress events of a running download
PROGRESS_INTERVAL = 0.5


class ModelDownloadRequest(BaseModel):
    model_name: str = Field(min_length=1, max_length=200)


def _engines(services: Services) -> Engines:
    if services.engines is None:
        raise ConflictError("no engines are configured on this worker")
    return services.engines


@router.get("/models/status")
def models_status(services: Services = Depends(get_services)) -> dict[str, Any]:
    """Voicebox's ``ModelStatusListResponse``: ``{models: [{model_name, display_name, downloaded, ...}]}``.

    Plus what an operator needs: ``engines`` (the configured models, what is loaded, counters). No network.
    """
    answer: dict[str, Any] = {"models": services.model_management.status()}
    if services.engines is not None:
        answer["engines"] = services.engines.status()
    return answer


@router.get("/models/cache-dir")
def models_cache_dir(services: Services = Depends(get_services)) -> dict[str, str]:
    """The Hugging Face cache, relative to the volume root (``huggingface/hub``)."""
    return {"path": services.model_management.cache_dir()}


@router.post("/models/load", openapi_extra=ADMIN)
def models_load(
    model_size: str | None = None, services: Services = Depends(get_services)
) -> dict[str, Any]:
    engines = _engines(services)
    engines.load_all()
    return {"message": "models loaded", "status": engines.status()}


@router.post("/models/unload", openapi_extra=ADMIN)
def models_unload(services: Services = Depends(get_services)) -> dict[str, Any]:
    engines = _engines(services)
    if services.settings.serverless:
        raise ConflictError("models stay loaded in serverless mode (SERVERLESS=1)")
    engines.unload()
    return {"message": "models unloaded"}


@router.post("/models/download", openapi_extra=ADMIN)
def models_download(
    body: ModelDownloadRequest, services: Services = Depends(get_services)
) -> dict[str, str]:
    """Start a download into the volume's cache; follow it on ``/models/progress/{name}``."""
    return {"message": services.model_management.download(body.model_name)}


@router.post("/models/download/cancel", openapi_extra=ADMIN)
def models_download_cancel(
    body: ModelDownloadRequest, services: Services = Depends(get_services)
) -> dict[str, str]:
    return {"message": services.model_management.cancel_download(body.model_name)}


@router.get("/models/progress/{model_name}")
async def models_progress(model_name: str, request: Request) -> StreamingResponse:
    """Server-sent ``ModelProgress`` events until ``complete`` or ``error`` (one event when idle)."""
    management = request.app.state.services.model_management
    first = await asyncio.to_thread(management.progress, model_name)  # 400 for an unknown name

    async def events() -> AsyncIterator[str]:
        event = first
        while True:
            yield f"data: {json.dumps(event)}\n\n"
            if event["status"] in ("complete", "error") or await request.is_disconnected():
                return
            await asyncio.sleep(PROGRESS_INTERVAL)
            event = await asyncio.to_thread(management.progress, model_name)

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/models/{model_name}/unload", openapi_extra=ADMIN)
def models_unload_one(
    model_name: str, services: Services = Depends(get_services)
) -> dict[str, str]:
    return {"message": services.model_management.unload(model_name)}


@router.delete("/models/{model_name}", openapi_extra=ADMIN)
def models_delete(model_name: str, services: Services = Depends(get_services)) -> dict[str, str]:
    return {"message": services.model_management.delete(model_name)}
