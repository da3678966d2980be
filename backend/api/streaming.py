"""``POST /generate/stream``: upstream Voicebox's streamed speech (a WAV header of open length, then PCM as it
is generated), plus ``format=pcm|mp3|opus`` and ``persist`` (ours). The bytes helpers are shared with the
OpenAI route's streams.

The route waits for the first chunk before it answers, so a request that fails before any audio (an engine
that cannot load, a profile without samples) still gets a real status code; once audio flows, a failure can
only end the stream early (the history row says why). A client that disconnects closes the stream: the
synthesis stops after the chunk in progress.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Literal

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from backend.api.generation import GenerationRequest
from backend.engines.base import OUTPUT_SAMPLE_RATE
from backend.services.errors import ValidationError
from backend.services.generation import GenerationInput
from backend.services.streaming import (
    RETRY_AFTER_SECONDS,
    AudioStream,
    StreamEnd,
    StreamingService,
    StreamItem,
    StreamsBusyError,
)
from backend.statuses import GenerationStatus
from backend.storage import effects as fx
from backend.storage.audio_stream import (
    StreamEncoder,
    StreamFormatError,
    open_stream_encoder,
)

log = logging.getLogger("voicebox.api")

router = APIRouter(tags=["generation"])

#: how often a waiting stream checks whether its client is still there
DISCONNECT_POLL_SECONDS = 0.25
#: the answer when the synthesis ended without audio: failed → 500, cancelled → 409
_END_STATUS: dict[str, int] = {GenerationStatus.FAILED: 500, GenerationStatus.CANCELLED: 409}
STREAM_TYPES = ("audio/wav", "audio/pcm", "audio/mpeg", "audio/ogg")


def streaming_service(request: Request) -> StreamingService:
    return request.app.state.services.streaming


def stream_encoder(fmt: str) -> StreamEncoder:
    """The encoder, or a 400 naming the formats that stream."""
    try:
        return open_stream_encoder(fmt, OUTPUT_SAMPLE_RATE)
    except StreamFormatError as err:
        raise HTTPException(400, str(err)) from None


async def open_stream(
    request: Request, generation: GenerationInput, *, persist: bool
) -> tuple[AudioStream, StreamItem]:
    """Open a stream and wait for its first piece: errors before any audio become HTTP errors."""
    service = streaming_service(request)
    try:
        stream = await run_in_threadpool(service.open, generation, persist=persist)
    except StreamsBusyError as err:
        raise HTTPException(
            429, err.message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        ) from None
    try:
        first = await first_item(stream, request)
    except BaseException:
        stream.close("the client went away before the first audio")
        raise
    if isinstance(first, StreamEnd) and first.status != GenerationStatus.COMPLETED:
        headers = {"X-Generation-ID": stream.generation_id} if stream.generation_id else None
        raise HTTPException(
            _END_STATUS.get(first.status, 500),
            f"generation {stream.generation_id or '(not stored)'} {first.status}: {first.error}",
            headers=headers,
        )
    return stream, first


async def first_item(stream: AudioStream, request: Request) -> StreamItem:
    while True:
        item = await stream.next(DISCONNECT_POLL_SECONDS)
        if item is not None:
            return item
        if await request.is_disconnected():
            stream.close("the client disconnected")
            # nobody reads this answer; 499 is the usual "client closed the request" in access logs
            raise HTTPException(499, "the client disconnected before the first audio")


async def audio_bytes(
    stream: AudioStream, encoder: StreamEncoder, request: Request, first: StreamItem
) -> AsyncIterator[bytes]:
    """The encoded stream: each piece as soon as it is buffered; the encoder's tail at the end."""
    item: StreamItem | None = first
    try:
        while True:
            if isinstance(item, StreamEnd):
                if item.status != GenerationStatus.COMPLETED:
                    log.warning("stream %s ended early: %s", stream.generation_id, item.error)
                tail = encoder.finish()
                if tail:
                    yield tail
                return
            if item is not None:
                data = encoder.encode(item)
                if data:
                    yield data
            item = await stream.next(DISCONNECT_POLL_SECONDS)
            if item is None and await request.is_disconnected():
                stream.close("the client disconnected")
                return
    finally:
        # normal end: a no-op; a send that failed or a cancelled task: stop the synthesis
        stream.close("the client disconnected")


def stream_headers(stream: AudioStream, filename: str) -> dict[str, str]:
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
        "X-Voicebox-Stream-Mode": "live",
    }
    if stream.generation_id:
        headers["X-Generation-ID"] = stream.generation_id
    return headers


@router.post(
    "/generate/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the audio as it is generated (chunked transfer)",
            "content": {
                kind: {"schema": {"type": "string", "format": "binary"}} for kind in STREAM_TYPES
            },
        },
        429: {"description": "every stream slot is taken (VOICEBOX_MAX_STREAMS); see Retry-After"},
    },
)
async def generate_stream(
    body: GenerationRequest,
    request: Request,
    format: Literal["wav", "pcm", "mp3", "opus"] = Query(  # noqa: A002 - the public parameter name
        "wav",
        description="wav (open-length header), pcm (s16le), mp3 (CBR) or opus (Ogg); flac cannot stream",
    ),
    persist: bool = Query(
        True, description="false: do not keep a history row (upstream's behaviour)"
    ),
    x_request_id: str | None = Header(default=None, max_length=128),
) -> StreamingResponse:
    encoder = stream_encoder(format)
    refusal = body.refusal()
    if refusal is not None:
        raise ValidationError(refusal)
    # what the request leaves out comes from /settings/generation, as for POST /generate
    defaults = await anyio.to_thread.run_sync(request.app.state.services.app_settings.generation)
    generation = GenerationInput(
        profile_id=body.profile_id,
        text=body.text,
        language=body.language,
        seed=body.seed,
        instruct=body.instruct,
        model_size=body.model_size,
        max_chunk_chars=body.max_chunk_chars or defaults.max_chunk_chars,
        crossfade_ms=defaults.crossfade_ms if body.crossfade_ms is None else body.crossfade_ms,
        normalize=defaults.normalize_audio if body.normalize is None else body.normalize,
        request_id=x_request_id or None,
        source="stream",
        effects_chain=(
            None if body.effects_chain is None else fx.validate_chain(body.effects_chain)
        ),
    )
    stream, first = await open_stream(request, generation, persist=persist)
    extension = {"pcm": "pcm", "mp3": "mp3", "opus": "ogg"}.get(format.lower(), "wav")
    return StreamingResponse(
        audio_bytes(stream, encoder, request, first),
        media_type=encoder.content_type,
        headers=stream_headers(stream, f"speech.{extension}"),
    )
