"""Whisper through transformers: long clips are transcribed in full, window by window (plumbing only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np

from backend.engines.whisper import WINDOW_SECONDS, split_windows

ROOT = Path(__file__).resolve().parent.parent


def test_windows_cover_everything_and_cut_at_quiet_points() -> None:
    sr = 16000
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(int(70 * sr))).astype(np.float32)
    audio[int(27.0 * sr) : int(27.3 * sr)] = 0.0  # a pause near the first boundary
    windows = split_windows(audio, sr)
    assert windows[0][0] == 0 and windows[-1][1] == audio.size
    assert all(b[0] == a[1] for a, b in pairwise(windows))  # contiguous, nothing lost
    assert all(0 < e - s <= WINDOW_SECONDS * sr for s, e in windows)
    assert 27.0 * sr <= windows[0][1] <= 27.3 * sr
    assert len(split_windows(audio[: 10 * sr], sr)) == 1


def test_45_second_clip_in_several_windows(tiny_stt_engine) -> None:
    sr = 24000
    t = np.arange(45 * sr) / sr
    audio = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    calls = []
    real = tiny_stt_engine._model.generate

    def counting(inputs, **kw):  # type: ignore[no-untyped-def]
        calls.append(inputs.shape[0])
        return real(inputs, **kw)

    tiny_stt_engine._model.generate = counting
    try:
        text = tiny_stt_engine.transcribe(audio, sr, "en")
    finally:
        del tiny_stt_engine._model.generate
    assert isinstance(text, str)
    assert tiny_stt_engine.last_windows == 2 and sum(calls) == 2
    short = tiny_stt_engine.transcribe(audio[: 3 * sr], sr, None)  # language detection path
    assert isinstance(short, str) and tiny_stt_engine.last_windows == 1
    assert tiny_stt_engine.transcribe(audio[:0], sr, "en") == ""


def test_unknown_language_falls_back_to_detection(tiny_stt_engine) -> None:
    assert tiny_stt_engine._language_kwargs("xx") == {"task": "transcribe"}
    assert tiny_stt_engine._language_kwargs("en") == {"task": "transcribe", "language": "en"}


def test_transcripts_unchanged_and_no_duplicate_processor_notice(tiny_models, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The engine hands Whisper its own copy of the generation settings, so transformers no longer builds the
    token-suppression processors twice (it said so once per process: "A custom logits processor ... has been
    passed"). In a fresh process, since transformers says it only once; the transcripts are exactly
    those of the checkpoint run the plain transformers way."""
    volume = tmp_path / "v"
    tiny_models.copy_cache_to(volume)
    code = """
import json, sys
import numpy as np
from backend.config import load_settings
from backend.engines.whisper import WhisperSTTEngine
engine = WhisperSTTEngine(load_settings())
engine.load()
sr = 24000
rng = np.random.default_rng(1)
clips = [(0.2 * np.sin(2 * np.pi * 220 * np.arange(n * sr) / sr)
          + 0.05 * rng.standard_normal(n * sr)).astype(np.float32) for n in (3, 45)]
ours = [engine.transcribe(c, sr, lang) for c in clips for lang in ("en", None)]
print("--- reference ---", file=sys.stderr, flush=True)
from transformers import WhisperForConditionalGeneration
plain = WhisperForConditionalGeneration.from_pretrained(str(engine.snapshot_path)).eval()
engine._model, engine._generation = plain, plain.generation_config
reference = [engine.transcribe(c, sr, lang) for c in clips for lang in ("en", None)]
print(json.dumps({"ours": ours, "reference": reference}))
"""
    env = dict(os.environ)
    env.update(
        VOICEBOX_VOLUME=str(volume),
        VOICEBOX_LOCAL_DIR=str(tmp_path / "local"),
        VOICEBOX_STT_MODEL=tiny_models.stt_repo,
        VOICEBOX_DEVICE="cpu",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours_said = proc.stderr.split("--- reference ---")[0]
    assert "custom logits processor" not in ours_said
    assert "default values have been modified" not in ours_said
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ours"] == out["reference"] and len(out["ours"]) == 4
