"""What a synthesis request is, and the one call that runs it on the engines.

Why its own module: a durable generation (``generation.py``) and an unpersisted stream (``streaming.py``) make
audio from the same request the same way; the request, the audio sink a stream hands in, the profile check and
the engine call live here once, so the two cannot drift apart (a new request field reaches both or neither).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from sqlalchemy.orm import Session

from backend.db.models import Profile
from backend.services.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from backend.db.interface import Database
    from backend.engines.base import (
        AudioCallback,
        AudioPiece,
        Engines,
        ProgressCallback,
        SynthesisResult,
    )
    from backend.storage.blobs import BlobStore


@dataclass(frozen=True)
class GenerationInput:
    profile_id: str
    text: str
    language: str = "en"
    seed: int | None = None
    instruct: str | None = None
    model_size: str | None = None
    max_chunk_chars: int = 800
    crossfade_ms: int = 50
    normalize: bool = True
    request_id: str | None = None
    #: the new row's id when the caller picks it (the bridge does, to answer before the job runs)
    generation_id: str | None = None
    source: str = (
        "manual"  # Voicebox's field: where the request came from (``openai`` for /v1/audio/speech)
    )
    #: the effects for this generation (checked); None: the profile's chain, if it has one
    effects_chain: list[dict[str, Any]] | None = None
    #: a new take of a completed generation (``/generate/{id}/regenerate``): its file's path
    take_path: str | None = None


class SinkClosed(Exception):
    """Raised by an ``AudioSink`` whose reader is gone (disconnected, or stopped reading): the generation
    stops after the chunk in progress and is recorded as cancelled with this message."""


class AudioSink(Protocol):
    """Where a streamed generation's audio goes as it is made (``backend/services/streaming.py``)."""

    def bind(self, generation_id: str) -> None:
        """The generation this sink now belongs to (before synthesis starts)."""
        ...

    def push(self, piece: AudioPiece) -> None:
        """Audio that is final now; may block while the reader catches up, or raise ``SinkClosed``."""
        ...

    def final_audio(self, audio: np.ndarray) -> np.ndarray:
        """What is stored for the whole generation: the samples the sink sent, in one array."""
        ...

    def end(self, status: str, error: str | None) -> None:
        """The generation is over (``completed`` once its audio and row are durable, else ``failed`` or
        ``cancelled``)."""
        ...


def usable_profile(session: Session, profile_id: str) -> Profile:
    """The profile a request names, refused (404, 400) when it is missing or has no samples to clone."""
    profile = session.get(Profile, profile_id)
    if profile is None:
        raise NotFoundError(f"profile {profile_id} not found")
    if not profile.samples:
        raise ValidationError(
            f"profile {profile.name!r} has no samples; add one with POST "
            f"/profiles/{profile.id}/samples before generating"
        )
    return profile


def profile_samples(
    db: Database,
    blobs: BlobStore,
    profile_id: str,
    pick: Callable[[Session, str], Profile] = usable_profile,
) -> list[tuple[bytes, str]]:
    """The reference clips of the profile ``pick`` accepts, as (audio bytes, reference text): the rows are
    read in one short read unit, the files after it (no database lock is held while the volume is read)."""
    with db.read() as session:
        pairs = [(s.audio_path, s.reference_text) for s in pick(session, profile_id).samples]
    return [(blobs.read_bytes(path), text) for path, text in pairs]


def synthesize(
    engines: Engines,
    samples: list[tuple[bytes, str]],
    request: GenerationInput,
    *,
    on_progress: ProgressCallback | None = None,
    on_audio: AudioCallback | None = None,
) -> SynthesisResult:
    """The request's text in the profile's voice: the request's language, seed, instruct and chunking."""
    return engines.synthesize_detailed(
        samples,
        request.text,
        language=request.language,
        seed=request.seed,
        instruct=request.instruct,
        max_chunk_chars=request.max_chunk_chars,
        crossfade_ms=request.crossfade_ms,
        on_progress=on_progress,
        on_audio=on_audio,
    )
