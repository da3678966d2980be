"""OpenAI-compatible speech: ``POST /v1/audio/speech`` on top of the durable generation jobs.

Why on top of ``GenerationService`` and not beside it: a speech request is a ``/generate?wait=true`` with another
request shape, so it gets the same intent row, the same lease and recovery, the same idempotent retries (the
RunPod job id arrives as ``X-Request-ID``) and the same history row. This module only translates: the OpenAI
voice becomes a profile, the OpenAI model name is checked against the names that mean "the configured engine",
and the stored 24 kHz WAV is time-stretched (``speed``) and encoded in the requested format.

Decisions a client may notice (also in ``docs/api.md``):
- ``model`` never switches weights: every accepted name runs the configured ``VOICEBOX_TTS_MODEL``.
- ``speed`` is applied by a WSOLA time stretch (tempo changes, pitch is kept); ``1.0`` is untouched.
- ``aac`` is refused with a message: libsndfile has no AAC encoder and the image has no ffmpeg.
- The history row says ``source="openai"``, so a user can tell speech requests from ``/generate`` ones.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
from sqlalchemy import func, select

from backend.config import Settings
from backend.db.interface import Database
from backend.db.models import Profile
from backend.services.errors import NotFoundError, ValidationError
from backend.services.synthesis import GenerationInput
from backend.statuses import CANCELLED_ERROR, GenerationStatus
from backend.storage.audio import (
    content_type,
    decode_audio,
    encode_audio,
    resample,
    to_mono,
)
from backend.storage.audio_stream import STREAM_FORMATS
from backend.storage.blobs import BlobStore

if TYPE_CHECKING:
    from backend.services.generation import GenerationService
    from backend.services.profiles import ProfileService
    from backend.services.streaming import AudioStream, StreamingService

#: OpenAI's ``response_format`` values; ``aac`` is listed so it gets a clear refusal, not a schema error.
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
#: ``pcm`` is what OpenAI sends: raw signed 16-bit little-endian mono at 24 kHz, no header.
PCM_SAMPLE_RATE = 24000
PCM_CONTENT_TYPE = "audio/pcm"
MIN_SPEED = 0.25
MAX_SPEED = 4.0
MAX_INPUT_CHARS = 50000
#: OpenAI's TTS model names; each runs the configured engine (dated ``gpt-4o-mini-tts-*`` names too).
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
#: Our own aliases: any name starting with ``qwen3-tts`` (case-insensitive) and ``voicebox``.
ALIAS_MODELS = ("qwen3-tts", "voicebox")
VOICE_ID_PREFIX = "profile:"
VOICES_HINT = "list the voices with GET /v1/audio/voices (a profile name or profile:<id>)"


@dataclass(frozen=True)
class SpeechRequest:
    """One ``POST /v1/audio/speech`` after schema validation (ranges are checked again here)."""

    model: str
    input: str
    voice: str
    response_format: str = "mp3"
    speed: float = 1.0
    instructions: str | None = None
    stream_format: str | None = None
    #: extensions (not OpenAI's): the profile's language is the default; no seed means random
    language: str | None = None
    seed: int | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class SpeechResult:
    """The encoded answer and where it came from (the history row keeps the unstretched WAV)."""

    audio: bytes
    content_type: str
    response_format: str
    generation_id: str
    model: str
    duration: float


@dataclass(frozen=True)
class Voice:
    """A profile as an OpenAI-style voice: ``id`` is ``profile:<uuid>``, ``name`` is the profile name."""

    id: str
    name: str
    language: str
    description: str | None
    sample_count: int
    created_at: datetime | None


class SpeechFailedError(Exception):
    """The generation ended without audio (``kind``: ``failed``, ``cancelled`` or ``timeout``).

    Not a ``ServiceError``: the central mapping would make it a 400, and an engine failure or a timeout is
    not the client's fault. The route answers 500/409/504 and names the history row.
    """

    def __init__(self, message: str, *, generation_id: str, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.generation_id = generation_id
        self.kind = kind


class SpeechService:
    """Stateless translator between OpenAI's speech API and the generation service."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        blobs: BlobStore,
        *,
        profiles: ProfileService,
        generation: GenerationService,
        streaming: StreamingService,
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.profiles = profiles
        self.generation = generation
        self.streaming = streaming

    # ------------------------------------------------------------------------------------------ listings
    def model_ids(self) -> list[str]:
        """Names ``/v1/models`` lists: the configured repo id first, then the aliases."""
        names = [self.settings.tts_model, "qwen3-tts", *OPENAI_MODELS]
        return list(dict.fromkeys(names))

    def list_voices(self) -> list[Voice]:
        return [
            Voice(
                id=f"{VOICE_ID_PREFIX}{info.profile.id}",
                name=info.profile.name,
                language=info.profile.language,
                description=info.profile.description,
                sample_count=info.sample_count,
                created_at=info.profile.created_at,
            )
            for info in self.profiles.list_profiles()
        ]

    # ------------------------------------------------------------------------------------------ checks
    def resolve_model(self, model: str) -> str:
        """The configured repo id when ``model`` is a name we accept; a 400 naming the accepted ones if not."""
        wanted = model.strip().lower()
        repo = self.settings.tts_model.strip().lower()
        accepted = {repo, repo.rsplit("/", 1)[-1], *OPENAI_MODELS, *ALIAS_MODELS}
        if (
            wanted in accepted
            or wanted.startswith("gpt-4o-mini-tts-")
            or wanted.startswith("qwen3-tts")
        ):
            return self.settings.tts_model
        raise ValidationError(
            f"model {model!r} is not served here; use one of {', '.join(self.model_ids())} "
            "(all run the configured engine; GET /v1/models lists them)"
        )

    def resolve_voice(self, voice: str) -> Profile:
        """A profile by exact name, by ``profile:<id>``, or by a name that differs only in case."""
        wanted = voice.strip()
        with self.db.read() as session:
            profile = session.scalar(select(Profile).where(Profile.name == wanted))
            if profile is None and wanted.startswith(VOICE_ID_PREFIX):
                profile = session.get(Profile, wanted[len(VOICE_ID_PREFIX) :].strip())
            if profile is None and wanted:
                matches = session.scalars(
                    select(Profile).where(func.lower(Profile.name) == wanted.lower()).limit(2)
                ).all()
                profile = matches[0] if len(matches) == 1 else None
        if profile is None:
            raise NotFoundError(f"voice {voice!r} not found; {VOICES_HINT}")
        return profile

    @staticmethod
    def check_request(request: SpeechRequest) -> None:
        """What the schema cannot say in OpenAI's shape, each refused with what to do instead."""
        fmt = request.response_format.lower()
        if fmt == "aac":
            raise ValidationError(
                "response_format 'aac' cannot be encoded on this server (no AAC encoder without "
                "ffmpeg); use mp3, opus, flac, wav or pcm"
            )
        if fmt not in SPEECH_FORMATS:
            raise ValidationError(
                f"response_format {request.response_format!r} is not supported; use mp3, opus, "
                "flac, wav or pcm"
            )
        if request.stream_format not in (None, "audio", "sse"):
            raise ValidationError(
                f"stream_format {request.stream_format!r} is not supported; use 'audio' (chunked "
                "bytes), 'sse' (speech.audio.delta events) or leave it out (the whole file)"
            )
        if request.stream_format is not None:
            if fmt not in STREAM_FORMATS:
                raise ValidationError(
                    f"response_format {fmt!r} cannot be streamed (its header is written once the "
                    f"length is known); stream {', '.join(STREAM_FORMATS)}, or leave out stream_format"
                )
            if request.speed != 1.0:
                raise ValidationError(
                    "speed other than 1.0 needs the whole audio (a time stretch over the full "
                    "signal); stream at speed 1.0, or leave out stream_format"
                )
        if not MIN_SPEED <= request.speed <= MAX_SPEED:
            raise ValidationError(
                f"speed {request.speed:g} is out of range; use {MIN_SPEED:g} to {MAX_SPEED:g}"
            )
        if not request.input.strip():
            raise ValidationError("input is empty")
        if len(request.input) > MAX_INPUT_CHARS:
            raise ValidationError(f"input is longer than {MAX_INPUT_CHARS} characters")

    def _generation_input(self, request: SpeechRequest) -> GenerationInput:
        """The generation a (checked) speech request asks for: its voice's profile, in the request's
        language or else the profile's, with a history row that says ``source="openai"``."""
        profile = self.resolve_voice(request.voice)
        return GenerationInput(
            profile_id=profile.id,
            text=request.input,
            language=request.language or profile.language or "en",
            seed=request.seed,
            instruct=request.instructions or None,
            request_id=request.request_id,
            source="openai",
        )

    # ------------------------------------------------------------------------------------------ speech
    def open_stream(self, request: SpeechRequest) -> tuple[AudioStream, str]:
        """A streamed speech request (``stream_format`` audio or sse): the stream and the model name.

        Durable like the whole-file answer (a history row with ``source="openai"``); every check runs first,
        so a bad request is a 4xx before any audio.
        """
        self.check_request(request)
        model = self.resolve_model(request.model)
        stream = self.streaming.open(self._generation_input(request))
        return stream, model

    def synthesize(self, request: SpeechRequest) -> SpeechResult:
        """Generate (durably, with a history row), then stretch and encode the stored audio."""
        self.check_request(request)
        model = self.resolve_model(request.model)
        generations = self.generation
        row = generations.start(self._generation_input(request))
        row = generations.wait(row.id, timeout=self.settings.job_timeout_seconds)
        if row.status == GenerationStatus.GENERATING:
            raise SpeechFailedError(
                f"generation {row.id} is still running after {self.settings.job_timeout_seconds:g} s; "
                f"fetch it later with GET /audio/{row.id}",
                generation_id=row.id,
                kind="timeout",
            )
        if row.status == GenerationStatus.CANCELLED or (
            row.status == GenerationStatus.FAILED and row.error == CANCELLED_ERROR
        ):
            raise SpeechFailedError(
                f"generation {row.id} was cancelled", generation_id=row.id, kind="cancelled"
            )
        if row.status != GenerationStatus.COMPLETED or not row.audio_path:
            raise SpeechFailedError(
                f"generation {row.id} failed: {row.error or 'no audio was produced'}",
                generation_id=row.id,
                kind="failed",
            )
        if not self.blobs.exists(row.audio_path):
            raise NotFoundError(
                f"the audio of generation {row.id} is missing on the volume; "
                "run `voicebox-worker volume fsck`"
            )
        stored = self.blobs.read_bytes(row.audio_path)
        fmt = request.response_format.lower()
        audio, rate = decode_audio(stored)
        if fmt == "wav" and request.speed == 1.0:  # the stored file already is the answer
            return SpeechResult(
                stored, content_type("wav"), fmt, row.id, model, audio.size / float(rate)
            )
        if fmt == "pcm" and request.speed == 1.0 and rate == PCM_SAMPLE_RATE:
            # the stored samples as they are (a float round trip would requantise them by 32767/32768),
            # so this answer and a streamed ``pcm`` of the same generation are the same bytes
            pcm = sf.read(io.BytesIO(stored), dtype="int16", always_2d=True)[0][:, 0]
            return SpeechResult(
                pcm.astype("<i2").tobytes(), PCM_CONTENT_TYPE, fmt, row.id, model, pcm.size / rate
            )
        audio = time_stretch(audio, request.speed)
        data, mime = encode_speech(audio, rate, fmt)
        return SpeechResult(data, mime, fmt, row.id, model, audio.size / float(rate))


# ---------------------------------------------------------------------------------------------- audio
def encode_speech(audio: np.ndarray, sample_rate: int, fmt: str) -> tuple[bytes, str]:
    """The answer bytes and content type; ``pcm`` is headerless s16le mono at 24 kHz, as OpenAI's."""
    if fmt == "pcm":
        mono = resample(audio, sample_rate, PCM_SAMPLE_RATE)
        ints = np.round(np.clip(mono, -1.0, 1.0) * 32767.0).astype("<i2")
        return ints.tobytes(), PCM_CONTENT_TYPE
    return encode_audio(audio, sample_rate, fmt), content_type(fmt)


def time_stretch(
    audio: np.ndarray, rate: float, *, frame: int = 1024, tolerance: int = 256
) -> np.ndarray:
    """Play ``rate`` times faster at the same pitch, by WSOLA (waveform-similarity overlap-add).

    Why WSOLA and not ``librosa.effects.time_stretch`` (a phase vocoder): the vocoder smears phase between bins
    ("phasiness") and loses level badly when slowing down (a 0.25× tone comes out at a fifth of its level), and
    its first call compiles numba kernels for seconds on a cold worker. WSOLA cuts the input into 43 ms Hann
    frames (at 24 kHz) and overlap-adds them at a fixed output hop, taking each frame from within ±``tolerance``
    samples of its nominal place where it best continues the previous one, so voiced speech keeps its waveform
    and its pitch. The result has ``round(len / rate)`` samples; ``rate == 1`` returns the input.
    """
    a = to_mono(audio)
    if rate == 1.0 or a.size == 0:
        return a
    target = max(1, int(round(a.size / rate)))
    hop = frame // 2  # a periodic Hann window overlap-adds to exactly 1 at half-frame hops
    window = np.hanning(frame + 1)[:-1]
    n_frames = target // hop + 3
    # Input padding: ``hop`` zeros so output frame 0 fades in on the first sample, ``tolerance`` either side for
    # the search, and enough tail for the last nominal place and its natural continuation.
    head = tolerance + hop
    tail = max(0, int(np.ceil(n_frames * hop * rate)) + 2 * frame + 2 * tolerance - a.size)
    x = np.pad(a.astype(np.float64), (head, tail))
    y = np.zeros(n_frames * hop + frame)
    weight = np.zeros_like(y)
    previous = -1
    for k in range(n_frames):
        nominal = tolerance + int(round(k * hop * rate))
        if previous < 0:
            position = nominal
        else:
            natural = x[previous + hop : previous + 2 * hop]
            low = nominal - tolerance
            region = x[low : nominal + tolerance + hop]
            position = low + int(np.argmax(np.correlate(region, natural, mode="valid")))
        y[k * hop : k * hop + frame] += window * x[position : position + frame]
        weight[k * hop : k * hop + frame] += window
        previous = position
    y /= np.where(weight > 1e-3, weight, 1.0)
    return y[hop : hop + target].astype(np.float32)
