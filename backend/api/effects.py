"""Effects, effect presets and generation versions (upstream Voicebox's routes and shapes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from backend.api.deps import AUDIO_TYPES, file_answer, get_services, temp_file_response
from backend.schemas import GenerationVersionResponse
from backend.services.container import Services
from backend.storage import effects as fx

router = APIRouter(tags=["effects"])


class EffectConfig(BaseModel):
    """One effect of a chain (upstream's ``EffectConfig``); types and ranges are checked by the service."""

    type: str = Field(max_length=50)
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)


#: a chain longer than ``MAX_EFFECTS`` is refused here, before anything is read (a 1,000-effect chain: 422)
Chain = list[EffectConfig]


class ApplyEffectsRequest(BaseModel):
    effects_chain: Chain = Field(max_length=fx.MAX_EFFECTS)
    source_version_id: str | None = Field(default=None, max_length=64)
    label: str | None = Field(default=None, max_length=200)
    set_as_default: bool = False


class EffectPresetCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    effects_chain: Chain = Field(max_length=fx.MAX_EFFECTS)


class EffectPresetUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    effects_chain: Chain | None = Field(default=None, max_length=fx.MAX_EFFECTS)


class EffectPresetResponse(BaseModel):
    id: str
    name: str
    description: str | None = None
    effects_chain: list[dict[str, Any]]
    is_builtin: bool
    sort_order: int = 100


class AvailableEffectsResponse(BaseModel):
    effects: list[dict[str, Any]]


def _chain(chain: Chain | None) -> list[dict[str, Any]] | None:
    return None if chain is None else [e.model_dump() for e in chain]


def _preset(row) -> EffectPresetResponse:
    return EffectPresetResponse(
        id=row.id,
        name=row.name,
        description=row.description,
        effects_chain=fx.parse_stored(row.effects_chain) or [],
        is_builtin=bool(row.is_builtin),
        sort_order=row.sort_order,
    )


@router.get("/effects/available", response_model=AvailableEffectsResponse)
def available_effects() -> AvailableEffectsResponse:
    return AvailableEffectsResponse(effects=fx.available())


@router.post(
    "/effects/preview/{generation_id}",
    response_class=FileResponse,
    responses=file_answer("audio/wav", description="the processed audio; nothing is saved"),
)
def preview_effects(
    generation_id: str, data: ApplyEffectsRequest, services: Services = Depends(get_services)
) -> FileResponse:
    preview = services.versions.preview(generation_id, _chain(data.effects_chain))
    answer = temp_file_response(preview.path, preview.filename, "audio/wav")
    answer.headers["Cache-Control"] = "no-cache, no-store"
    return answer


@router.get("/effects/presets", response_model=list[EffectPresetResponse])
def list_presets(services: Services = Depends(get_services)) -> list[EffectPresetResponse]:
    return [_preset(p) for p in services.effects.presets()]


@router.get("/effects/presets/{preset_id}", response_model=EffectPresetResponse)
def get_preset(preset_id: str, services: Services = Depends(get_services)) -> EffectPresetResponse:
    return _preset(services.effects.preset(preset_id))


@router.post("/effects/presets", response_model=EffectPresetResponse)
def create_preset(
    data: EffectPresetCreate, services: Services = Depends(get_services)
) -> EffectPresetResponse:
    return _preset(
        services.effects.create_preset(data.name, data.description, _chain(data.effects_chain))
    )


@router.put("/effects/presets/{preset_id}", response_model=EffectPresetResponse)
def update_preset(
    preset_id: str, data: EffectPresetUpdate, services: Services = Depends(get_services)
) -> EffectPresetResponse:
    return _preset(
        services.effects.update_preset(
            preset_id, data.name, data.description, _chain(data.effects_chain)
        )
    )


@router.delete("/effects/presets/{preset_id}")
def delete_preset(preset_id: str, services: Services = Depends(get_services)) -> dict[str, str]:
    services.effects.delete_preset(preset_id)
    return {"status": "deleted"}


@router.get("/generations/{generation_id}/versions", response_model=list[GenerationVersionResponse])
def list_versions(
    generation_id: str, services: Services = Depends(get_services)
) -> list[GenerationVersionResponse]:
    return [GenerationVersionResponse.from_row(v) for v in services.versions.list(generation_id)]


@router.post(
    "/generations/{generation_id}/versions/apply-effects",
    response_model=GenerationVersionResponse,
)
def apply_effects(
    generation_id: str, data: ApplyEffectsRequest, services: Services = Depends(get_services)
) -> GenerationVersionResponse:
    version = services.versions.apply_effects(
        generation_id,
        _chain(data.effects_chain),
        label=data.label,
        set_as_default=data.set_as_default,
        source_version_id=data.source_version_id,
    )
    return GenerationVersionResponse.from_row(version)


@router.put(
    "/generations/{generation_id}/versions/{version_id}/set-default",
    response_model=GenerationVersionResponse,
)
def set_default_version(
    generation_id: str, version_id: str, services: Services = Depends(get_services)
) -> GenerationVersionResponse:
    return GenerationVersionResponse.from_row(
        services.versions.set_default(generation_id, version_id)
    )


@router.delete("/generations/{generation_id}/versions/{version_id}")
def delete_version(
    generation_id: str, version_id: str, services: Services = Depends(get_services)
) -> dict[str, str]:
    services.versions.delete(generation_id, version_id)
    return {"status": "deleted"}


@router.get(
    "/audio/version/{version_id}",
    response_class=FileResponse,
    responses=file_answer(*AUDIO_TYPES, description="the version's audio"),
)
def version_audio(version_id: str, services: Services = Depends(get_services)) -> FileResponse:
    _version, path = services.versions.audio_path(version_id)
    return FileResponse(path, media_type="audio/wav")
