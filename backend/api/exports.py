"""``GET /exports/{name}``: fetch a file the worker wrote to ``voicebox/exports/`` (a spilled RunPod answer,
a library export). Names only — never paths — and never through a symbolic link planted in that folder
(``volume_file``), so no request can read outside it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from starlette.responses import FileResponse

from backend.api.deps import AUDIO_TYPES, content_disposition, file_answer, get_services
from backend.services.common import VOLUME_NAME_MAX, VOLUME_NAME_PATTERN, volume_file
from backend.services.container import Services
from backend.services.errors import NotFoundError

router = APIRouter(tags=["exports"])


@router.get(
    "/exports/{name}",
    response_class=FileResponse,
    responses=file_answer(
        "application/zip", "application/octet-stream", *AUDIO_TYPES, description="the export"
    ),
)
def get_export(
    name: str = Path(max_length=VOLUME_NAME_MAX, pattern=VOLUME_NAME_PATTERN),
    services: Services = Depends(get_services),
) -> FileResponse:
    path = volume_file(services.settings.exports_dir, name, what="export")
    if not path.is_file():
        raise NotFoundError(f"no export named {name!r} in voicebox/exports/")
    media = "application/zip" if name.endswith(".zip") else "application/octet-stream"
    if name.endswith((".wav", ".flac", ".mp3", ".opus", ".ogg")):
        from backend.storage.audio import content_type

        media = content_type(name.rsplit(".", 1)[1])
    return FileResponse(
        path, media_type=media, headers={"Content-Disposition": content_disposition(name)}
    )
