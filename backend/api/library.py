"""Bulk export and import of the whole library (not in Voicebox): to the response or to the volume."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from backend.api.deps import file_answer, get_services, temp_file_response
from backend.api.uploads import (
    BUNDLE_FORM_OPENAPI,
    UploadForm,
    bundle_form,
    bundle_source,
)
from backend.schemas import ImportReport, LibraryExportRequest, VolumeExportResponse
from backend.services.bundles import ImportResult
from backend.services.container import Services

router = APIRouter(tags=["library"])


def _report(result: ImportResult) -> ImportReport:
    return ImportReport(
        profiles_created=result.profiles_created,
        profiles_skipped=result.profiles_skipped,
        profiles_renamed=result.profiles_renamed,
        samples_created=result.samples_created,
        samples_skipped=result.samples_skipped,
        generations_created=result.generations_created,
        generations_skipped=result.generations_skipped,
        message=result.summary(),
    )


@router.get(
    "/library/export",
    response_class=FileResponse,
    responses=file_answer("application/zip", description="the library bundle"),
)
def export_library(
    include_history: bool = Query(False, description="also export every finished generation"),
    services: Services = Depends(get_services),
) -> FileResponse:
    exported = services.bundles.export_library(include_history=include_history)
    return temp_file_response(exported.path, exported.filename, "application/zip")


@router.post("/library/export", response_model=VolumeExportResponse)
def export_library_to_volume(
    data: LibraryExportRequest, services: Services = Depends(get_services)
) -> VolumeExportResponse:
    result = services.bundles.export_library_to_volume(
        data.volume_name, include_history=data.include_history
    )
    return VolumeExportResponse(
        volume_name=result.volume_name,
        size_bytes=result.size_bytes,
        sha256=result.sha256,
        profiles=result.profiles,
        samples=result.samples,
        generations=result.generations,
        message=f"library written to voicebox/exports/{result.volume_name} on the volume",
    )


@router.post(
    "/library/import",
    response_model=ImportReport,
    openapi_extra=BUNDLE_FORM_OPENAPI,
)
def import_library(
    form: UploadForm = Depends(bundle_form), services: Services = Depends(get_services)
) -> ImportReport:
    return _report(services.bundles.import_library(bundle_source(form, services)))
