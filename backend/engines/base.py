"""Engine protocols and the voice prompt value type.

Why protocols: the API, the database and the RunPod handler must never import torch. They talk to whatever sits
behind these two small interfaces: the real Qwen3-TTS / Whisper engines in production, the deterministic fakes in
fast tests. ``VoicePrompt`` is plain named numpy arrays plus string metadata so that the prompt cache can store it
as safetensors and load it back without unpickling anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: what every engine produces: float32 mono at this rate (Voicebox's contract)
OUTPUT_SAMPLE_RATE = 24000


@dataclass
class VoicePrompt:
    """A reusable voice-clone prompt: named arrays (CPU numpy) and string metadata.

    Engines convert their tensors to numpy here (bfloat16 widened to float32) and back when generating, so the
    same prompt works on CPU and GPU and survives a restart through the on-volume cache.
    """

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))

    def equals(self, other: VoicePrompt) -> bool:
        """Exact equality of metadata and arrays (dtype, shape and values); used by tests and cache checks."""
        if self.meta != other.meta or set(self.arrays) != set(other.arrays):
            return False
        return all(
            self.arrays[k].dtype == other.arrays[k].dtype
            and self.arrays[k].shape == other.arrays[k].shape
            and np.array_equal(self.arrays[k], other.arrays[k])
            for k in self.arrays
        )


@runtime_checkable
class TTSEngine(Protocol):
    """A voice-cloning text-to-speech engine. Not thread-safe: the ``EngineManager`` serialises calls."""

    name: str
    repo_id: str
    revision: str | None
    sample_rate: int

    def load(self) -> None: ...

    def unload(self) -> None: ...

    def is_loaded(self) -> bool: ...

    def info(self) -> dict[str, Any]:
        """What ``/models/status`` shows of the engine (name, model, device, ...); cheap, no lock."""
        ...

    def build_prompt(self, samples: list[tuple[np.ndarray, int, str]]) -> VoicePrompt:
        """Build a prompt from ``(audio, sample_rate, reference_text)`` samples, in the given order."""
        ...

    def generate(
        self,
        text: str,
        prompt: VoicePrompt,
        *,
        language: str | None,
        seed: int | None,
        instruct: str | None,
    ) -> np.ndarray:
        """Synthesize ``text`` in the prompt's voice: float32 mono at ``sample_rate``."""
        ...


@runtime_checkable
class IncrementalTTSEngine(TTSEngine, Protocol):
    """A TTS engine that can hand out a chunk's audio while it is still generating it (streams only)."""

    def generate_incremental(
        self,
        text: str,
        prompt: VoicePrompt,
        *,
        language: str | None,
        seed: int | None,
        instruct: str | None,
        every_frames: int,
        emit: Callable[[np.ndarray], None],
    ) -> np.ndarray:
        """``generate`` that calls ``emit`` with the new samples every ``every_frames`` codec frames; returns
        everything emitted, joined. ``emit`` may raise to stop the generation."""
        ...


@runtime_checkable
class STTEngine(Protocol):
    """A speech-to-text engine. Not thread-safe: the ``EngineManager`` serialises calls."""

    name: str
    repo_id: str

    def load(self) -> None: ...

    def unload(self) -> None: ...

    def is_loaded(self) -> bool: ...

    def info(self) -> dict[str, Any]:
        """What ``/models/status`` shows of the engine; cheap, no lock."""
        ...

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None) -> str: ...


#: ``on_progress(done_chunks, total_chunks)``; it may raise to abort between chunks (cancellation)
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class AudioPiece:
    """What a streamed synthesis hands on after each chunk.

    ``audio`` are the samples of the final (crossfaded) output that became final with this chunk; all pieces
    concatenated are exactly the non-streamed output. ``chunk`` is the chunk as generated (before any
    crossfade), for a consumer that derives a level from it.
    """

    audio: np.ndarray
    chunk: np.ndarray
    index: int
    total: int
    sample_rate: int

    @property
    def last(self) -> bool:
        return self.index + 1 == self.total


#: ``on_audio(piece)`` runs after each chunk; it may block (back-pressure) or raise to abort
AudioCallback = Callable[[AudioPiece], None]


@dataclass
class SynthesisResult:
    """Audio plus the facts a generation row records (timings in seconds)."""

    audio: np.ndarray
    sample_rate: int
    chunks: int
    prompt_cached: bool
    load_seconds: float = 0.0
    prompt_seconds: float = 0.0
    synthesis_seconds: float = 0.0
    chunk_chars: list[int] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / float(self.sample_rate)

    @property
    def rtf(self) -> float:
        """Real-time factor: synthesis seconds per second of audio (lower is faster)."""
        return self.synthesis_seconds / self.duration if self.duration > 0 else 0.0


#: the Voicebox app's engine id for a voice-cloning Qwen3-TTS engine (its ``engine`` request/row field)
VOICEBOX_QWEN_ENGINE = "qwen"


class Engines(Protocol):
    """What the services, routes and the RunPod launcher may ask of a worker's engines.

    ``EngineManager`` is the implementation; the protocol is the seam, so a holder (``Services.engines``) is
    typed with it and a call to a method that does not exist fails the type check instead of looking live.
    """

    @property
    def tts_engine_name(self) -> str:
        """The configured TTS engine's own name (``qwen3-tts``, ``fake``): bundle manifests, prompt keys."""
        ...

    @property
    def voicebox_engine(self) -> str:
        """The Voicebox app's engine id this worker serves (``qwen``): generation rows and requests."""
        ...

    def synthesize_detailed(
        self,
        profile_samples: Sequence[tuple[bytes, str]],
        text: str,
        language: str | None = None,
        seed: int | None = None,
        instruct: str | None = None,
        max_chunk_chars: int = 800,
        crossfade_ms: float = 50,
        on_progress: ProgressCallback | None = None,
        on_audio: AudioCallback | None = None,
    ) -> SynthesisResult: ...

    def transcribe(
        self, audio: np.ndarray | bytes, sample_rate: int | None = None, language: str | None = None
    ) -> str: ...

    def load_all(self, include_stt: bool = True) -> None: ...

    def unload(self, which: str | None = None) -> None: ...

    def is_loaded(self, kind: str) -> bool: ...

    def refresh_downloaded(self) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def health(self) -> dict[str, Any]: ...

    def forget_prompts(self, sample_sha256s: Sequence[str]) -> int:
        """Drop every cached voice prompt built from any of these samples (hex sha256 of the audio)."""
        ...

    def clear_prompts(self) -> int:
        """Drop every cached voice prompt; how many files went."""
        ...

    def close(self) -> None: ...


class EngineError(RuntimeError):
    """An engine could not load or run; the message says what to do about it."""


#: Voicebox language codes → the language names Qwen3-TTS expects
QWEN_LANGUAGES: dict[str, str] = {
    "en": "English",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "de": "German",
    "fr": "French",
    "ru": "Russian",
    "pt": "Portuguese",
    "es": "Spanish",
    "it": "Italian",
}


def release_device_memory() -> None:
    """Give a dropped model's memory back (GPU caches included) so the next load fits."""
    import gc

    gc.collect()
    try:
        import torch
    except ImportError:  # pragma: no cover - engines need torch; the fakes do not
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
