"""Whisper transcription through transformers (``WhisperForConditionalGeneration`` + ``WhisperProcessor``).

Why windows of our own: Whisper sees at most 30 s at a time, and Voicebox transcribes only the first 30 s of a
clip. Here a long clip is cut into ≤ 30 s windows — at the quietest 100 ms in the last few seconds of each
window, so words are rarely split — transcribed in small batches, and the texts joined in order. Model loading
goes through the volume cache exactly like the TTS engine (see ``qwen.py`` for why a snapshot directory).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from backend.config import Settings
from backend.engines.base import EngineError, release_device_memory

log = logging.getLogger(__name__)

WHISPER_SR = 16000
WINDOW_SECONDS = 30.0
#: a window may end up to this much earlier than 30 s, at the quietest point
SEARCH_SECONDS = 5.0
BATCH = 4


def split_windows(audio: np.ndarray, sample_rate: int = WHISPER_SR) -> list[tuple[int, int]]:
    """(start, end) sample ranges of ≤ 30 s that cover ``audio`` exactly, cut at quiet points."""
    n = int(audio.shape[0])
    win = int(WINDOW_SECONDS * sample_rate)
    if n <= win:
        return [(0, n)]
    frame = max(1, sample_rate // 10)
    search = int(SEARCH_SECONDS * sample_rate)
    out = []
    start = 0
    while n - start > win:
        lo, hi = start + win - search, start + win
        seg = audio[lo:hi]
        usable = (seg.size // frame) * frame
        if usable >= frame:
            energy = (seg[:usable].reshape(-1, frame) ** 2).mean(axis=1)
            quietest = energy.size - 1 - int(np.argmin(energy[::-1]))  # the latest quietest frame
            cut = min(max(lo + quietest * frame + frame // 2, start + frame), hi)
        else:
            cut = hi
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


class WhisperSTTEngine:
    """``STTEngine`` over a transformers Whisper checkpoint from the volume's HF cache."""

    name = "whisper"

    def __init__(self, settings: Settings, repo_id: str | None = None) -> None:
        self.settings = settings
        self.repo_id = repo_id or settings.stt_model
        self.revision: str | None = None
        self.device: str | None = None
        self.snapshot_path: Path | None = None
        self.last_windows = 0
        self._model: Any = None
        self._processor: Any = None
        self._generation: Any = None

    def load(self) -> None:
        if self._model is not None:
            return
        from backend.engines.hfcache import ensure_model

        status = ensure_model(self.settings, self.repo_id)
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        from backend.engines.qwen import resolve_device

        device = resolve_device(self.settings.device)
        dtype = torch.float16 if device.startswith("cuda") else torch.float32
        processor = WhisperProcessor.from_pretrained(str(status.path))
        model = WhisperForConditionalGeneration.from_pretrained(str(status.path), dtype=dtype)
        self._model = model.to(device).eval()
        self._generation = _own_generation_config(model)
        self._processor = processor
        self.device = device
        self.revision = status.commit
        self.snapshot_path = status.path

    def unload(self) -> None:
        if self._model is None:
            return
        self._model = None
        self._processor = None
        self._generation = None
        release_device_memory()

    def is_loaded(self) -> bool:
        return self._model is not None

    def _language_kwargs(self, language: str | None) -> dict[str, str]:
        gc_ = self._model.generation_config
        if not getattr(gc_, "is_multilingual", False):
            return {}  # English-only checkpoints reject language/task
        kwargs = {"task": "transcribe"}
        if language and language.lower() != "auto":
            code = language.lower()
            if f"<|{code}|>" in (getattr(gc_, "lang_to_id", None) or {}):
                kwargs["language"] = code
            else:
                log.warning("Whisper does not know language %r; detecting it instead", language)
        return kwargs

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None) -> str:
        """The full transcript of ``audio`` (any length; windows of ≤ 30 s)."""
        if self._model is None:
            raise EngineError("the STT engine is not loaded")
        import torch

        from backend.storage.audio import resample

        a = resample(np.asarray(audio, dtype=np.float32), int(sample_rate), WHISPER_SR)
        if a.size == 0:
            self.last_windows = 0
            return ""
        windows = split_windows(a, WHISPER_SR)
        self.last_windows = len(windows)
        max_target = int(getattr(self._model.config, "max_target_positions", 448))
        max_new = max(1, min(440, max_target - 8))
        kwargs = self._language_kwargs(language)
        texts: list[str] = []
        for i in range(0, len(windows), BATCH):
            batch = [a[s:e] for s, e in windows[i : i + BATCH]]
            feats = self._processor(batch, sampling_rate=WHISPER_SR, return_tensors="pt")
            inputs = feats.input_features.to(self._model.device, self._model.dtype)
            with torch.inference_mode():
                ids = self._model.generate(
                    inputs,
                    generation_config=copy.deepcopy(self._generation),  # generate() edits it
                    max_new_tokens=max_new,
                    **kwargs,
                )
            texts.extend(self._processor.batch_decode(ids, skip_special_tokens=True))
        return " ".join(t.strip() for t in texts if t and t.strip())

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.repo_id,
            "revision": self.revision,
            "loaded": self.is_loaded(),
            "device": self.device,
        }


def _own_generation_config(model: Any) -> Any:
    """The checkpoint's generation settings, kept for ``transcribe``; the model's own copy loses its token
    suppression.

    Why: Whisper's ``generate`` turns ``suppress_tokens``/``begin_suppress_tokens`` of the config it is given
    into logits processors and clears them there, but transformers' generic ``generate`` then fills the cleared
    values back in from ``model.generation_config`` and builds the same processors again, logging "A custom
    logits processor ... has been passed to `.generate()`" once per process (the image build's prewarm showed it)
    and "default values have been modified". With the model's copy cleared there is nothing to fill back in:
    the same suppression runs once, and the transcripts are the same (``tests/test_engines_whisper.py``).
    """
    own = copy.deepcopy(model.generation_config)
    model.generation_config.suppress_tokens = None
    model.generation_config.begin_suppress_tokens = None
    return own
