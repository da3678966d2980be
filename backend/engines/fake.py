"""Deterministic stand-in engines (no torch) for fast API tests and dry runs.

Selected with ``VOICEBOX_TTS_MODEL=fake`` / ``VOICEBOX_STT_MODEL=fake``. The fake TTS produces a tone whose pitch
comes from the voice prompt plus seeded noise, with a length proportional to the text, so tests can check
determinism (same seed → same samples), chunking (longer text → longer audio) and prompt caching (the prompt
depends on the samples) without loading any model.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from backend.engines.base import OUTPUT_SAMPLE_RATE, VoicePrompt

FAKE_TRANSCRIPT = "this is a fake transcript"


class FakeTTSEngine:
    """A ``TTSEngine`` that needs no model: 60 ms of audio per character, at least 0.2 s."""

    name = "fake"
    sample_rate = OUTPUT_SAMPLE_RATE

    def __init__(self, repo_id: str = "fake", revision: str | None = "fake-1") -> None:
        self.repo_id = repo_id
        self.revision = revision
        self._loaded = False
        self.prompt_builds = 0
        self.generate_calls = 0

    def load(self) -> None:
        self._loaded = True

    def unload(self) -> None:
        self._loaded = False

    def is_loaded(self) -> bool:
        return self._loaded

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.repo_id,
            "revision": self.revision,
            "loaded": self._loaded,
            "device": "cpu",
            "sample_rate": self.sample_rate,
        }

    def build_prompt(self, samples: list[tuple[np.ndarray, int, str]]) -> VoicePrompt:
        if not samples:
            raise ValueError("a voice prompt needs at least one sample")
        self.prompt_builds += 1
        feats = []
        for audio, sr, _text in samples:
            a = np.asarray(audio, dtype=np.float32).reshape(-1)
            feats.append([float(np.sqrt(np.mean(a * a))) if a.size else 0.0, a.size / float(sr)])
        texts = " ".join(t for _, _, t in samples)
        return VoicePrompt(
            arrays={"features": np.asarray(feats, dtype=np.float32)},
            meta={"engine": self.name, "ref_text": texts},
        )

    def generate(
        self,
        text: str,
        prompt: VoicePrompt,
        *,
        language: str | None,
        seed: int | None,
        instruct: str | None,
    ) -> np.ndarray:
        self.generate_calls += 1
        n = max(int(0.2 * self.sample_rate), int(0.06 * self.sample_rate * len(text)))
        feats = prompt.arrays.get("features", np.zeros((1, 2), dtype=np.float32))
        digest = hashlib.sha256(feats.tobytes() + (language or "").encode()).digest()
        freq = 120.0 + digest[0] * 1.5
        rng = np.random.default_rng(seed)
        t = np.arange(n, dtype=np.float32) / self.sample_rate
        audio = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(n)
        return audio.astype(np.float32)


class FakeSTTEngine:
    """An ``STTEngine`` that returns ``FAKE_TRANSCRIPT`` (empty for silence) without any model."""

    name = "fake"

    def __init__(self, repo_id: str = "fake") -> None:
        self.repo_id = repo_id
        self._loaded = False
        self.calls = 0

    def load(self) -> None:
        self._loaded = True

    def unload(self) -> None:
        self._loaded = False

    def is_loaded(self) -> bool:
        return self._loaded

    def info(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self.repo_id, "loaded": self._loaded, "device": "cpu"}

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None) -> str:
        self.calls += 1
        a = np.asarray(audio, dtype=np.float32)
        if a.size == 0 or float(np.max(np.abs(a))) < 1e-4:
            return ""
        return FAKE_TRANSCRIPT
