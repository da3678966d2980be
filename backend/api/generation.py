"""Generation routes: Voicebox upstream's contract (``status``, ``/generate/{id}/status``, ``/audio/{id}``)
plus ``?wait=true``, which answers only once the audio is durable on the volume — what the RunPod handler uses,
because a serverless worker may be stopped as soon as its job ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from backend.db.errors import fault_from_message
from backend.engines.base import VOICEBOX_QWEN_ENGINE
from backend.schemas import LANGUAGE_PATTERN, GenerationResponse
from backend.services.errors import NotFoundError, ValidationError
from backend.services.generation import GenerationInput, GenerationService
from backend.statuses import FINAL
from backend.storage import effects as fx

router = APIRouter(tags=["generation"])

#: What every server-sent event stream answers with (Voicebox's): no caching, no proxy buffering.
SSE_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
#: The one engine this server runs (Qwen3-TTS Base, voice cloning), by the Voicebox app's engine id.
ENGINE = VOICEBOX_QWEN_ENGINE


class GenerationRequest(BaseModel):
    """Voicebox upstream's ``GenerationRequest``.

    ``max_chunk_chars``, ``crossfade_ms`` and ``normalize`` left out come from ``/settings/generation``.
    ``effects_chain`` is applied (the clean audio kept as the ``original`` version, the processed one the
    default); left out, the profile's chain applies. ``engine`` and ``personality`` are honoured when this
    server can (``qwen``, no personality) and refused with a 400 naming the field otherwise.
    """

    profile_id: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=50000, pattern=r"\S")  # not only whitespace
    language: str = Field(default="en", pattern=LANGUAGE_PATTERN)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    instruct: str | None = Field(default=None, max_length=500)
    model_size: str | None = Field(default=None, pattern=r"^(1\.7B|0\.6B|1B|3B)$")
    engine: str | None = Field(default=None, max_length=50)
    max_chunk_chars: int | None = Field(default=None, ge=100, le=5000)
    crossfade_ms: int | None = Field(default=None, ge=0, le=500)
    normalize: bool | None = None
    effects_chain: list[dict[str, Any]] | None = Field(default=None, max_length=50)
    personality: bool | None = None

    def refusal(self) -> str | None:
        """Why this server cannot honour the request as asked (None when it can)."""
        if self.engine is not None and self.engine != ENGINE:
            return (
                f"engine {self.engine!r} is not available on this server: it runs only {ENGINE!r} "
                "(Qwen3-TTS Base, voice cloning); leave engine out or send 'qwen'"
            )
        if self.personality:
            return (
                "personality is not supported: rewriting text in character needs a language model, "
                "which this server does not run; leave personality out or send false"
            )
        return None


def generation_service(request: Request) -> GenerationService:
    return request.app.state.services.generation


@router.post(
    "/generate",
    response_model=GenerationResponse,
    responses={
        429: {"description": "the generation queue is full (VOICEBOX_MAX_QUEUED); Retry-After"}
    },
)
async def generate(
    body: GenerationRequest,
    request: Request,
    wait: bool = Query(False, description="answer only when the audio is durable (or failed)"),
    x_request_id: str | None = Header(default=None, max_length=128),
    x_generation_id: str | None = Header(default=None, max_length=64),
) -> GenerationResponse:
    refusal = body.refusal()
    if refusal is not None:
        raise ValidationError(refusal)
    service = generation_service(request)
    services = request.app.state.services
    defaults = await anyio.to_thread.run_sync(services.app_settings.generation)
    row = await anyio.to_thread.run_sync(
        service.start,
        GenerationInput(
            profile_id=body.profile_id,
            text=body.text,
            language=body.language,
            seed=body.seed,
            instruct=body.instruct,
            model_size=body.model_size,
            max_chunk_chars=body.max_chunk_chars or defaults.max_chunk_chars,
            crossfade_ms=(
                defaults.crossfade_ms if body.crossfade_ms is None else body.crossfade_ms
            ),
            normalize=defaults.normalize_audio if body.normalize is None else body.normalize,
            request_id=x_request_id,
            generation_id=x_generation_id or None,
            effects_chain=(
                None if body.effects_chain is None else fx.validate_chain(body.effects_chain)
            ),
        ),
    )
    if wait:  # awaited, not blocking a thread: cheap routes never queue behind generations
        row = await service.wait_async(row.id, timeout=service.settings.job_timeout_seconds)
        _raise_volume_fault(row)
    return GenerationResponse.from_row(row)


def _raise_volume_fault(row) -> None:
    """A generation that failed because the volume is full or read-only answers 507/503, like any write."""
    fault = fault_from_message(row.error) if row.status == "failed" else None
    if fault is not None:
        raise fault


@router.get(
    "/generate/{generation_id}/status",
    responses={
        200: {
            "description": "server-sent events, or one JSON object with stream=false",
            "content": {
                "text/event-stream": {"schema": {"type": "string"}},
                "application/json": {},
            },
        }
    },
)
async def generation_status(
    generation_id: str,
    request: Request,
    stream: bool = Query(True, description="false: one JSON answer instead of server-sent events"),
):
    service = generation_service(request)
    if not stream:
        return _status_payload(service, await asyncio.to_thread(service.get, generation_id))
    try:
        row = await asyncio.to_thread(service.get, generation_id)
    except NotFoundError:  # Voicebox: one event the app closes on, not an error answer
        gone = {"id": generation_id, "status": "not_found"}
        return StreamingResponse(
            iter([f"data: {json.dumps(gone)}\n\n"]),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )

    async def events() -> AsyncIterator[str]:
        current = row
        deadline = asyncio.get_running_loop().time() + service.settings.job_timeout_seconds
        while True:
            yield f"data: {json.dumps(_status_payload(service, current))}\n\n"
            if current.status in FINAL or asyncio.get_running_loop().time() > deadline:
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(1.0)
            try:
                current = await asyncio.to_thread(service.get, generation_id)
            except NotFoundError:  # deleted while we watched
                yield f"data: {json.dumps({'id': generation_id, 'status': 'not_found'})}\n\n"
                return

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


def _status_payload(service: GenerationService, row) -> dict[str, object]:
    payload: dict[str, object] = {
        "id": row.id,
        "status": row.status,
        "duration": row.duration,
        "error": row.error,
        "source": row.source,
    }
    progress = service.progress(row.id)
    if progress is not None:
        payload["chunks_done"], payload["chunks_total"] = progress
    return payload


@router.post("/generate/{generation_id}/cancel")
def cancel_generation(generation_id: str, request: Request) -> dict[str, Any]:
    """Voicebox's ``{message}``; the row becomes ``failed`` with the error "Generation cancelled"."""
    row = generation_service(request).cancel(generation_id)
    return {"message": "Generation cancelled", "id": row.id, "status": row.status}


@router.post("/generate/{generation_id}/retry", response_model=GenerationResponse)
async def retry_generation(
    generation_id: str,
    request: Request,
    wait: bool = Query(False),
) -> GenerationResponse:
    """Re-run a failed generation in the same row (same id), as Voicebox does."""
    service = generation_service(request)
    row = await anyio.to_thread.run_sync(service.retry, generation_id)
    if wait:
        row = await service.wait_async(row.id, timeout=service.settings.job_timeout_seconds)
        _raise_volume_fault(row)
    return GenerationResponse.from_row(row)


@router.post("/generate/{generation_id}/regenerate", response_model=GenerationResponse)
async def regenerate_generation(
    generation_id: str,
    request: Request,
    wait: bool = Query(False),
) -> GenerationResponse:
    """A new take of a completed generation, saved as a new version that becomes the default (upstream's
    regenerate); the row is ``generating`` until it is done and keeps its current audio meanwhile."""
    service = generation_service(request)
    row = await anyio.to_thread.run_sync(service.regenerate, generation_id)
    if wait:
        row = await service.wait_async(row.id, timeout=service.settings.job_timeout_seconds)
        _raise_volume_fault(row)
    return GenerationResponse.from_row(row)
