"""OpenAI-compatible routes: ``POST /v1/audio/speech``, ``GET /v1/audio/voices``, ``GET /v1/models``.

Why: tools built on OpenAI's speech API (the official SDKs, Open WebUI, home-automation TTS plugins) can use
cloned voices by pointing their base URL at ``<server>/v1`` — the voice is a profile name. The routes only parse
OpenAI's shape; ``backend/services/speech.py`` does the work and the decisions (model names, speed, formats).
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from backend.api.deps import file_answer, get_services
from backend.api.streaming import (
    RETRY_AFTER_SECONDS,
    audio_bytes,
    first_item,
    stream_encoder,
    stream_headers,
)
from backend.schemas import LANGUAGE_PATTERN, UtcDatetime
from backend.services.speech import (
    MAX_INPUT_CHARS,
    MAX_SPEED,
    MIN_SPEED,
    SpeechFailedError,
    SpeechRequest,
    SpeechService,
)
from backend.services.streaming import AudioStream, StreamEnd, StreamsBusyError
from backend.statuses import GenerationStatus

#: OpenAI's error ``type`` by status (the SDKs pick their exception class from the status alone)
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
}


def openai_error_body(status: int, detail: object) -> dict[str, Any]:
    """``{"detail": ..., "error": {message, type, param, code}}``: Voicebox's shape and OpenAI's together.

    Why both: the OpenAI SDKs put only ``error.message`` into the exception text (a bare ``detail`` shows as
    "Error code: 404"), while scripts written for this server read ``detail``.
    """
    param = None
    if isinstance(detail, list):  # FastAPI validation errors
        parts = []
        for item in detail:
            loc = (
                [str(p) for p in item.get("loc", ()) if p != "body"]
                if isinstance(item, dict)
                else []
            )
            param = param or (".".join(loc) or None)
            msg = item.get("msg", item) if isinstance(item, dict) else item
            parts.append(f"{'.'.join(loc)}: {msg}" if loc else str(msg))
        message = "; ".join(parts) or "invalid request"
    else:
        message = str(detail)
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {
        "detail": detail,
        "error": {"message": message, "type": kind, "param": param, "code": None},
    }


class OpenAIErrorRoute(APIRoute):
    """Errors of ``/v1`` routes, still decided by the app's handlers (``backend/api/errors.py``), reshaped."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await inner(request)
            except Exception as exc:
                answer = await _central_answer(request, exc)
                if answer is None:
                    raise
                return _reshape(answer)

        return handler


async def _central_answer(request: Request, exc: Exception) -> Response | None:
    handlers = request.app.exception_handlers
    for kind in type(exc).__mro__:
        handler = handlers.get(kind)
        if handler is not None:
            if inspect.iscoroutinefunction(handler):
                return await handler(request, exc)
            return await run_in_threadpool(handler, request, exc)
    return None


def _reshape(answer: Response) -> Response:
    try:
        detail = json.loads(bytes(answer.body))["detail"]
    except (ValueError, KeyError, TypeError):
        return answer
    headers = {
        k: v for k, v in answer.headers.items() if k not in ("content-length", "content-type")
    }
    return JSONResponse(
        openai_error_body(answer.status_code, detail), answer.status_code, headers=headers
    )


#: what ``response_format`` answers: mp3, opus (Ogg), flac, wav, pcm (raw 16-bit)
SPEECH_TYPES = ("audio/mpeg", "audio/ogg", "audio/flac", "audio/wav", "audio/pcm")

router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIErrorRoute)

#: the answer to a generation that ended without audio; ``x-should-retry: false`` stops the OpenAI SDKs from
#: retrying (they retry 409 and 5xx), which would start a second generation beside the first
_FAILED_STATUS = {"failed": 500, "cancelled": 409, "timeout": 504}


class VoiceObject(BaseModel):
    """OpenAI's custom-voice form ``{"id": ...}``; the id is resolved like a voice string."""

    id: str = Field(min_length=1, max_length=200)


class SpeechBody(BaseModel):
    """OpenAI's ``CreateSpeechRequest``, plus ``language`` and ``seed`` (extensions)."""

    model: str = Field(min_length=1, max_length=200)
    input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS)
    voice: Annotated[str, Field(min_length=1, max_length=200)] | VoiceObject
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED)
    instructions: str | None = Field(default=None, max_length=4096)
    stream_format: Literal["audio", "sse"] | None = None
    language: str | None = Field(default=None, pattern=LANGUAGE_PATTERN)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)

    def to_request(self, request_id: str | None) -> SpeechRequest:
        voice = self.voice.id if isinstance(self.voice, VoiceObject) else self.voice
        return SpeechRequest(
            model=self.model,
            input=self.input,
            voice=voice,
            response_format=self.response_format,
            speed=self.speed,
            instructions=self.instructions,
            stream_format=self.stream_format,
            language=self.language,
            seed=self.seed,
            request_id=request_id,
        )


class VoiceEntry(BaseModel):
    id: str
    object: Literal["voice"] = "voice"
    name: str
    language: str
    description: str | None
    sample_count: int
    created_at: UtcDatetime | None


class VoiceList(BaseModel):
    """``data`` in OpenAI's list shape; ``voices`` (the names) as other OpenAI-compatible servers answer."""

    object: Literal["list"] = "list"
    data: list[VoiceEntry]
    voices: list[str]


class ModelEntry(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "voicebox-worker"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelEntry]


def speech_service(request: Request) -> SpeechService:
    services = get_services(request)
    return SpeechService(
        services.settings,
        services.db,
        services.blobs,
        profiles=services.profiles,
        generation=services.generation,
        streaming=services.streaming,
    )


@router.post(
    "/audio/speech",
    response_class=Response,
    responses=file_answer(*SPEECH_TYPES, "text/event-stream", description="the audio"),
)
async def create_speech(
    body: SpeechBody,
    request: Request,
    x_request_id: str | None = Header(default=None, max_length=128),
) -> Response:
    """Generate speech and answer the audio bytes (a history row is stored, as for ``/generate``).

    ``stream_format`` ``audio`` streams the bytes as they are generated (chunked transfer), ``sse`` sends
    ``speech.audio.delta`` events with base64 audio and then ``speech.audio.done``; without it the answer is
    the whole file.
    """
    # an empty X-Request-ID is no id (it would collide with every other empty one)
    speech = body.to_request(x_request_id or None)
    if speech.stream_format is not None:
        return await _stream_speech(speech, request)
    try:
        result = await run_in_threadpool(speech_service(request).synthesize, speech)
    except SpeechFailedError as err:
        raise HTTPException(
            _FAILED_STATUS.get(err.kind, 500),
            err.message,
            headers={"X-Generation-ID": err.generation_id, "x-should-retry": "false"},
        ) from None
    return Response(
        result.audio,
        media_type=result.content_type,
        headers={"X-Generation-ID": result.generation_id, "X-Voicebox-Model": result.model},
    )


async def _stream_speech(speech: SpeechRequest, request: Request) -> Response:
    service = speech_service(request)
    service.check_request(speech)  # a format that cannot stream is a 400 before anything starts
    encoder = stream_encoder(speech.response_format)
    try:
        stream, model = await run_in_threadpool(service.open_stream, speech)
    except StreamsBusyError as err:
        raise HTTPException(
            429,
            err.message,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS), "x-should-retry": "false"},
        ) from None
    try:
        first = await first_item(stream, request)
    except BaseException:
        stream.close("the client went away before the first audio")
        raise
    if isinstance(first, StreamEnd) and first.status != GenerationStatus.COMPLETED:
        raise HTTPException(
            _FAILED_STATUS.get(first.status, 500),
            f"generation {stream.generation_id} {first.status}: {first.error}",
            headers={"X-Generation-ID": stream.generation_id or "", "x-should-retry": "false"},
        )
    headers = stream_headers(stream, f"speech.{speech.response_format}")
    headers["X-Voicebox-Model"] = model
    chunks = audio_bytes(stream, encoder, request, first)
    if speech.stream_format == "sse":
        headers.pop("Content-Disposition")
        return StreamingResponse(
            _sse_events(chunks, stream, len(speech.input)),
            media_type="text/event-stream",
            headers=headers,
        )
    return StreamingResponse(chunks, media_type=encoder.content_type, headers=headers)


#: Qwen3-TTS's codec makes 12.5 frames a second: the "output tokens" of a speech stream's usage
CODEC_FRAMES_PER_SECOND = 12.5


async def _sse_events(chunks: Any, stream: AudioStream, input_chars: int) -> Any:
    """OpenAI's speech SSE: ``speech.audio.delta`` (base64 of the encoded bytes), then ``speech.audio.done``
    with ``usage`` (input: characters, output: codec frames); an ``error`` event if the synthesis failed."""
    async for data in chunks:
        event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
        yield f"data: {json.dumps(event)}\n\n"
    end = stream.end_state
    if end is not None and end.status != GenerationStatus.COMPLETED:
        error = {"message": f"generation {stream.generation_id} {end.status}: {end.error}"}
        yield f"data: {json.dumps({'type': 'error', 'error': error})}\n\n"
        return
    frames = round(stream.samples_pushed / stream.sample_rate * CODEC_FRAMES_PER_SECOND)
    usage = {
        "input_tokens": input_chars,
        "output_tokens": frames,
        "total_tokens": input_chars + frames,
    }
    yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n"


@router.get("/audio/voices", response_model=VoiceList)
def list_voices(request: Request) -> VoiceList:
    voices = speech_service(request).list_voices()
    return VoiceList(data=[VoiceEntry(**vars(v)) for v in voices], voices=[v.name for v in voices])


@router.get("/models", response_model=ModelList)
def list_models(request: Request) -> ModelList:
    return ModelList(data=[ModelEntry(id=name) for name in speech_service(request).model_ids()])
