"""``POST /transcribe``: multipart ``file`` (+ optional ``language``) → ``{text, duration}``."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from backend.api.deps import get_services
from backend.api.uploads import UploadForm, multipart_openapi, upload_form
from backend.services.container import Services
from backend.services.errors import ValidationError

router = APIRouter(tags=["transcription"])
transcribe_form = upload_form(lambda settings: settings.max_upload_bytes)


class TranscriptionResponse(BaseModel):
    text: str
    duration: float


@router.post(
    "/transcribe",
    response_model=TranscriptionResponse,
    openapi_extra=multipart_openapi(
        {"language": "optional language code, e.g. en"},
        ("file",),
        rules={"language": {"pattern": "^[A-Za-z]+(-[A-Za-z]+)*$", "maxLength": 10}},
    ),
)
def transcribe(
    form: UploadForm = Depends(transcribe_form),
    services: Services = Depends(get_services),
) -> TranscriptionResponse:
    language = (form.fields.get("language") or "").strip() or None
    if language is not None and (len(language) > 10 or not language.replace("-", "").isalpha()):
        raise ValidationError(f"language {language!r} is not a language code")
    result = services.transcription.transcribe(form.files["file"].path, language)
    return TranscriptionResponse(text=result.text, duration=result.duration)
