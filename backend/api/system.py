"""``GET /`` and ``GET /health``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from backend.api.deps import get_services
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
def health(services: Services = Depends(get_services)) -> HealthResponse:
    return HealthResponse(**health_info(services))


@router.head("/health", include_in_schema=False)
def health_head() -> Response:
    """``HEAD /health`` answers as ``GET /health`` does (200, no key needed), without computing a body."""
    return Response(status_code=200, media_type="application/json")
