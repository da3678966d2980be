"""How routes reach the services and build file answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import FileResponse

from backend.services.container import Services


def get_services(request: Request) -> Services:
    """The app's ``Services`` (set by ``create_app``); a FastAPI dependency."""
    return request.app.state.services


AUDIO_TYPES = ("audio/wav", "audio/flac", "audio/mpeg", "audio/ogg")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


def file_answer(*media_types: str, description: str = "the file") -> dict[int | str, Any]:
    """``responses=`` of a route that answers a file: the content types it sends, so the spec says so."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"description": description, "content": {t: binary for t in media_types}}}


def content_disposition(filename: str, kind: str = "attachment") -> str:
    """RFC 6266 with an ASCII fallback, so any profile name is a safe download name."""
    ascii_name = (
        filename.encode("ascii", "replace").decode("ascii").replace('"', "_").replace("?", "_")
    )
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def temp_file_response(path: Path, filename: str, media_type: str) -> FileResponse:
    """Send a temp file (an export) and delete it once it has been sent."""
    return FileResponse(
        path,
        media_type=media_type,
        headers={"Content-Disposition": content_disposition(filename)},
        background=BackgroundTask(path.unlink, missing_ok=True),
    )
