"""Profiles, samples, avatars and profile bundles (Voicebox's routes and field names)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from backend.api.deps import (
    IMAGE_TYPES,
    content_disposition,
    file_answer,
    get_services,
    temp_file_response,
)
from backend.api.uploads import (
    BUNDLE_FORM_OPENAPI,
    UploadForm,
    bundle_form,
    bundle_source,
    multipart_openapi,
    upload_form,
)
from backend.schemas import (
    MessageResponse,
    ProfileDeleteResponse,
    ProfileSampleResponse,
    ProfileSampleUpdate,
    VoiceProfileCreate,
    VoiceProfileResponse,
)
from backend.services.container import Services
from backend.services.profiles import MAX_AVATAR_BYTES, ProfileInfo

router = APIRouter(tags=["profiles"])

sample_form = upload_form(lambda s: s.max_upload_bytes, required_fields=("reference_text",))
avatar_form = upload_form(lambda s: MAX_AVATAR_BYTES)


def _profile(info: ProfileInfo) -> VoiceProfileResponse:
    return VoiceProfileResponse.from_row(
        info.profile, sample_count=info.sample_count, generation_count=info.generation_count
    )


# ---------------------------------------------------------------------------------------------- profiles
@router.post("/profiles", response_model=VoiceProfileResponse)
def create_profile(
    data: VoiceProfileCreate, services: Services = Depends(get_services)
) -> VoiceProfileResponse:
    return _profile(services.profiles.create_profile(data.name, data.description, data.language))


@router.get("/profiles", response_model=list[VoiceProfileResponse])
def list_profiles(services: Services = Depends(get_services)) -> list[VoiceProfileResponse]:
    return [_profile(info) for info in services.profiles.list_profiles()]


@router.post(
    "/profiles/import",
    response_model=VoiceProfileResponse,
    openapi_extra=BUNDLE_FORM_OPENAPI,
)
def import_profile(
    form: UploadForm = Depends(bundle_form), services: Services = Depends(get_services)
) -> VoiceProfileResponse:
    path = bundle_source(form, services)
    return _profile(services.bundles.import_profile(path))


@router.get("/profiles/{profile_id}", response_model=VoiceProfileResponse)
def get_profile(
    profile_id: str, services: Services = Depends(get_services)
) -> VoiceProfileResponse:
    return _profile(services.profiles.get_profile(profile_id))


class ProfileEffectsUpdate(BaseModel):
    effects_chain: list[dict[str, Any]] | None = Field(default=None, max_length=50)


@router.put("/profiles/{profile_id}/effects", response_model=VoiceProfileResponse)
def update_profile_effects(
    profile_id: str, data: ProfileEffectsUpdate, services: Services = Depends(get_services)
) -> VoiceProfileResponse:
    """Voicebox's profile effects: the chain every new generation of this profile gets (null: none)."""
    services.effects.set_profile_chain(profile_id, data.effects_chain)
    return _profile(services.profiles.get_profile(profile_id))


@router.put("/profiles/{profile_id}", response_model=VoiceProfileResponse)
def update_profile(
    profile_id: str, data: VoiceProfileCreate, services: Services = Depends(get_services)
) -> VoiceProfileResponse:
    return _profile(
        services.profiles.update_profile(profile_id, data.name, data.description, data.language)
    )


@router.delete("/profiles/{profile_id}", response_model=ProfileDeleteResponse)
def delete_profile(
    profile_id: str, services: Services = Depends(get_services)
) -> ProfileDeleteResponse:
    result = services.profiles.delete_profile(profile_id)
    return ProfileDeleteResponse(
        message="Profile deleted successfully",
        samples_deleted=result.samples_deleted,
        generations_kept=result.generations_kept,
    )


@router.get(
    "/profiles/{profile_id}/export",
    response_class=FileResponse,
    responses=file_answer("application/zip", description="the profile bundle"),
)
def export_profile(
    profile_id: str,
    format: Literal["1.1", "1.0"] = Query(
        "1.1", description="1.1 (ours, every field) or 1.0 (Voicebox's exact format)"
    ),
    services: Services = Depends(get_services),
) -> FileResponse:
    exported = services.bundles.export_profile(profile_id, format)
    return temp_file_response(exported.path, exported.filename, "application/zip")


# ---------------------------------------------------------------------------------------------- samples
@router.post(
    "/profiles/{profile_id}/samples",
    response_model=ProfileSampleResponse,
    openapi_extra=multipart_openapi(
        {"reference_text": "the words spoken in the clip (1..1000 characters)"},
        ("file", "reference_text"),
        rules={"reference_text": {"minLength": 1, "maxLength": 1000, "pattern": r"\S"}},
    ),
)
def add_sample(
    profile_id: str,
    form: UploadForm = Depends(sample_form),
    services: Services = Depends(get_services),
) -> ProfileSampleResponse:
    sample = services.profiles.add_sample(
        profile_id, form.files["file"].path, form.fields["reference_text"]
    )
    return ProfileSampleResponse.from_row(sample)


@router.get("/profiles/{profile_id}/samples", response_model=list[ProfileSampleResponse])
def list_samples(
    profile_id: str, services: Services = Depends(get_services)
) -> list[ProfileSampleResponse]:
    return [ProfileSampleResponse.from_row(s) for s in services.profiles.list_samples(profile_id)]


@router.put("/profiles/samples/{sample_id}", response_model=ProfileSampleResponse)
def update_sample(
    sample_id: str, data: ProfileSampleUpdate, services: Services = Depends(get_services)
) -> ProfileSampleResponse:
    return ProfileSampleResponse.from_row(
        services.profiles.update_sample(sample_id, data.reference_text)
    )


@router.delete("/profiles/samples/{sample_id}", response_model=MessageResponse)
def delete_sample(sample_id: str, services: Services = Depends(get_services)) -> MessageResponse:
    services.profiles.delete_sample(sample_id)
    return MessageResponse(message="Sample deleted successfully")


@router.get(
    "/samples/{sample_id}",
    response_class=FileResponse,
    responses=file_answer("audio/wav", description="the sample audio"),
)
def get_sample_audio(sample_id: str, services: Services = Depends(get_services)) -> FileResponse:
    path = services.profiles.sample_file(sample_id)
    return FileResponse(
        path,
        media_type="audio/wav",
        headers={"Content-Disposition": content_disposition(f"{sample_id}.wav", "inline")},
    )


# ---------------------------------------------------------------------------------------------- avatar
@router.post(
    "/profiles/{profile_id}/avatar",
    response_model=VoiceProfileResponse,
    openapi_extra=multipart_openapi({}, ("file",)),
)
def upload_avatar(
    profile_id: str,
    form: UploadForm = Depends(avatar_form),
    services: Services = Depends(get_services),
) -> VoiceProfileResponse:
    return _profile(services.profiles.set_avatar(profile_id, form.files["file"].path))


@router.get(
    "/profiles/{profile_id}/avatar",
    response_class=FileResponse,
    responses=file_answer(*IMAGE_TYPES, description="the avatar"),
)
def get_avatar(profile_id: str, services: Services = Depends(get_services)) -> FileResponse:
    path, media_type = services.profiles.avatar_file(profile_id)
    return FileResponse(path, media_type=media_type)


@router.delete("/profiles/{profile_id}/avatar", response_model=MessageResponse)
def delete_avatar(profile_id: str, services: Services = Depends(get_services)) -> MessageResponse:
    services.profiles.delete_avatar(profile_id)
    return MessageResponse(message="Avatar deleted successfully")
