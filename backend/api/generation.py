"""Generation routes: Voicebox upstream's contract (``status``, ``/generate/{id}/status``, ``/audio/{id}``)
plus ``?wait=true``, which answers only once the audio is durable on the volume — what the RunPod handler uses,
because a serverless worker may be stopped as soon as its job ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from backend.db.errors import fault_from_message
from backend.schemas import LANGUAGE_PATTERN, GenerationResponse
from backend.services.generation import FINAL, GenerationInput, GenerationService

router = APIRouter(tags=["generation"])


class GenerationRequest(BaseModel):
    """Voicebox upstream's ``GenerationRequest`` (the engine/effects fields it has are not used here)."""

    profile_id: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=50000)
    language: str = Field(default="en", pattern=LANGUAGE_PATTERN)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    instruct: str | None = Field(default=None, max_length=500)
    model_size: str | None = Field(default=None, pattern=r"^(1\.7B|0\.6B|1B|3B)$")
    engine: str | None = Field(default=None, max_length=50)
    max_chunk_chars: int = Field(default=800, ge=100, le=5000)
    crossfade_ms: int = Field(default=50, ge=0, le=500)
    normalize: bool = True


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
) -> GenerationResponse:
    service = generation_service(request)
    row = await anyio.to_thread.run_sync(
        service.start,
        GenerationInput(
            profile_id=body.profile_id,
            text=body.text,
            language=body.language,
            seed=body.seed,
            instruct=body.instruct,
            model_size=body.model_size,
            max_chunk_chars=body.max_chunk_chars,
            crossfade_ms=body.crossfade_ms,
            normalize=body.normalize,
            request_id=x_request_id,
        ),
    )
    if wait:  # awaited, not blocking a thread: cheap routes never queue behind generations
        row = await service.wait_async(row.id, timeout=service.settings.job_timeout_seconds)
        _raise_volume_fault(row)
    return GenerationResponse.from_row(row)


def _raise_volume_fault(row) -> None:  # type: ignore[no-untyped-def]
    """A generation that failed because the volume is full or read-only answers 507/503, like any write."""
    fault = fault_from_message(row.error) if row.status == "failed" else None
    if fault is not None:
        raise fault


@router.get("/generate/{generation_id}/status")
async def generation_status(
    generation_id: str,
    request: Request,
    stream: bool = Query(True, description="false: one JSON answer instead of server-sent events"),
):  # type: ignore[no-untyped-def]
    service = generation_service(request)
    row = await asyncio.to_thread(service.get, generation_id)  # 404 before any stream starts
    if not stream:
        return _status_payload(service, row)

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
            current = await asyncio.to_thread(service.get, generation_id)

    return StreamingResponse(events(), media_type="text/event-stream")


def _status_payload(service: GenerationService, row) -> dict[str, object]:  # type: ignore[no-untyped-def]
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


@router.post("/generate/{generation_id}/cancel", response_model=GenerationResponse)
def cancel_generation(generation_id: str, request: Request) -> GenerationResponse:
    return GenerationResponse.from_row(generation_service(request).cancel(generation_id))


@router.post("/generate/{generation_id}/retry", response_model=GenerationResponse)
async def retry_generation(
    generation_id: str,
    request: Request,
    wait: bool = Query(False),
    x_request_id: str | None = Header(default=None, max_length=128),
) -> GenerationResponse:
    service = generation_service(request)
    row = await anyio.to_thread.run_sync(
        lambda: service.retry(generation_id, request_id=x_request_id)
    )
    if wait:
        row = await service.wait_async(row.id, timeout=service.settings.job_timeout_seconds)
        _raise_volume_fault(row)
    return GenerationResponse.from_row(row)
