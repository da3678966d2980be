"""Generation history, its audio, and generation bundles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response

from backend.api.deps import (
    AUDIO_TYPES,
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
)
from backend.schemas import (
    FavoriteResponse,
    GenerationImportResponse,
    HistoryListResponse,
    HistoryResponse,
    HistoryStatsResponse,
    MessageResponse,
)
from backend.services.container import Services
from backend.services.history import MAX_LIMIT, MAX_OFFSET, AudioAnswer

if TYPE_CHECKING:
    from backend.db.models import Generation

router = APIRouter(tags=["history"])


def _audio_response(answer: AudioAnswer, disposition: str) -> Response:
    headers = {"Content-Disposition": content_disposition(answer.filename, disposition)}
    if answer.path is not None:
        return FileResponse(answer.path, media_type=answer.media_type, headers=headers)
    return Response(answer.data or b"", media_type=answer.media_type, headers=headers)


def next_cursor(rows: Sequence[Generation], limit: int) -> str | None:
    from backend.services.history import cursor_of

    return cursor_of(rows[-1]) if len(rows) == limit else None


@router.get("/history", response_model=HistoryListResponse)
def list_history(
    profile_id: str | None = None,
    search: str | None = Query(None, max_length=500),
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    after: str | None = Query(
        None,
        max_length=200,
        description="keyset paging for deep pages: the `next_cursor` (a generation id) of the previous page",
    ),
    services: Services = Depends(get_services),
) -> HistoryListResponse:
    rows, total = services.history.list(
        profile_id=profile_id, search=search, limit=limit, offset=offset, after=after
    )
    return HistoryListResponse(
        items=[HistoryResponse.from_row(r) for r in rows],
        total=total,
        next_cursor=next_cursor(rows, limit),
    )


@router.get("/history/stats", response_model=HistoryStatsResponse)
def history_stats(services: Services = Depends(get_services)) -> HistoryStatsResponse:
    stats = services.history.stats()
    return HistoryStatsResponse(
        total_generations=stats.total_generations,
        total_duration_seconds=stats.total_duration_seconds,
        generations_by_profile=stats.generations_by_profile,
        favorites=stats.favorites,
        by_status=stats.by_status,
    )


@router.post(
    "/history/import",
    response_model=GenerationImportResponse,
    openapi_extra=BUNDLE_FORM_OPENAPI,
)
def import_generation(
    form: UploadForm = Depends(bundle_form), services: Services = Depends(get_services)
) -> GenerationImportResponse:
    result = services.bundles.import_generation(bundle_source(form, services))
    row = result.generation
    where = (
        f"assigned to profile: {row.profile_name}"
        if result.profile_matched
        else f"no matching profile here; kept as history of {row.profile_name or 'an unknown profile'}"
    )
    return GenerationImportResponse(
        id=row.id,
        profile_id=row.profile_id,
        profile_name=row.profile_name,
        text=row.text,
        duration=row.duration,
        message=f"Generation imported successfully ({where})",
    )


@router.delete("/history/failed")
def clear_failed_generations(services: Services = Depends(get_services)) -> dict[str, int]:
    """Voicebox's "Clear failed": ``{deleted: n}``. Declared before ``/history/{id}``, which would catch it."""
    return {"deleted": services.generation.clear_failed()}


@router.get("/history/{generation_id}", response_model=HistoryResponse)
def get_history(generation_id: str, services: Services = Depends(get_services)) -> HistoryResponse:
    return HistoryResponse.from_row(services.history.get(generation_id))


@router.delete("/history/{generation_id}", response_model=MessageResponse)
def delete_history(
    generation_id: str, services: Services = Depends(get_services)
) -> MessageResponse:
    services.history.delete(generation_id)
    return MessageResponse(message="Generation deleted successfully")


@router.post("/history/{generation_id}/favorite", response_model=FavoriteResponse)
def toggle_favorite(
    generation_id: str, services: Services = Depends(get_services)
) -> FavoriteResponse:
    return FavoriteResponse(is_favorited=services.history.toggle_favorite(generation_id))


@router.get(
    "/history/{generation_id}/export",
    response_class=FileResponse,
    responses=file_answer("application/zip", description="the generation bundle"),
)
def export_generation(
    generation_id: str, services: Services = Depends(get_services)
) -> FileResponse:
    exported = services.bundles.export_generation(generation_id)
    return temp_file_response(exported.path, exported.filename, "application/zip")


@router.get(
    "/history/{generation_id}/export-audio",
    response_class=Response,
    responses=file_answer(*AUDIO_TYPES, description="the audio, as an attachment"),
)
def export_generation_audio(
    generation_id: str, services: Services = Depends(get_services)
) -> Response:
    return _audio_response(services.history.export_audio(generation_id), "attachment")


@router.get(
    "/audio/{generation_id}",
    response_class=Response,
    responses=file_answer(*AUDIO_TYPES, description="the audio"),
)
def get_audio(
    generation_id: str,
    format: Literal["wav", "flac", "mp3", "opus"] = Query("wav"),
    services: Services = Depends(get_services),
) -> Response:
    return _audio_response(services.history.audio(generation_id, format), "inline")
