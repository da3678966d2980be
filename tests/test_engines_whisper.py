"""Whisper through transformers: long clips are transcribed in full, window by window (plumbing only)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from backend.engines.whisper import WINDOW_SECONDS, split_windows


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
