"""Transcription with Whisper: decode any supported upload, transcribe long clips in full (chunked)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backend.services.common import require_engines
from backend.services.errors import ValidationError
from backend.storage.audio import AudioValidationError, decode_audio

if TYPE_CHECKING:
    from backend.engines.base import Engines


@dataclass(frozen=True)
class Transcript:
    text: str
    duration: float


class TranscriptionService:
    def __init__(self, engines: Engines | None) -> None:
        self.engines = engines

    def transcribe(self, source: Path, language: str | None = None) -> Transcript:
        engines = require_engines(self.engines, "speech-to-text engine")
        try:
            audio, rate = decode_audio(source.read_bytes())
        except AudioValidationError as exc:
            raise ValidationError(str(exc)) from None
        if audio.size == 0:
            raise ValidationError("the audio file is empty")
        duration = float(audio.shape[0]) / float(rate)
        text = engines.transcribe(audio, rate, language or None)
        return Transcript(text=text.strip(), duration=duration)
