"""Voicebox's ``/settings/generation``: server-side generation defaults, used by ``POST /generate``."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from backend.api.deps import get_services
from backend.services.container import Services

router = APIRouter(tags=["settings"])


class GenerationSettingsResponse(BaseModel):
    max_chunk_chars: int
    crossfade_ms: int
    normalize_audio: bool
    autoplay_on_generate: bool


class GenerationSettingsUpdate(BaseModel):
    """A partial update: fields left out (or null) keep their value; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    max_chunk_chars: int | None = Field(default=None, ge=100, le=5000)
    crossfade_ms: int | None = Field(default=None, ge=0, le=500)
    # strict: 0/1 are not booleans (the spec says boolean, so the server must refuse them too)
    normalize_audio: StrictBool | None = None
    autoplay_on_generate: StrictBool | None = None


@router.get("/settings/generation", response_model=GenerationSettingsResponse)
def get_generation_settings(
    services: Services = Depends(get_services),
) -> GenerationSettingsResponse:
    return GenerationSettingsResponse(**services.app_settings.generation().as_dict())


@router.put("/settings/generation", response_model=GenerationSettingsResponse)
def update_generation_settings(
    patch: GenerationSettingsUpdate, services: Services = Depends(get_services)
) -> GenerationSettingsResponse:
    updated = services.app_settings.update_generation(patch.model_dump(exclude_unset=True))
    return GenerationSettingsResponse(**updated.as_dict())
