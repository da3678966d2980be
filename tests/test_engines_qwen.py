"""The tiny real Qwen3-TTS Base engine, loaded by repo id from the volume's HF cache with the hub offline."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.engines.chunking import split_text
from backend.engines.manager import EngineManager
from backend.engines.prompt_cache import PromptCache
from tests.support.tiny_models import TinyModels

pytestmark = pytest.mark.needs_torch

ROOT = Path(__file__).resolve().parents[1]
SR = 24000


def clip(seconds: float = 3.0, freq: float = 180.0, sr: int = SR) -> bytes:
    t = np.arange(int(seconds * sr)) / sr
    audio = (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def manager(models: TinyModels, engine, volume: Path, **extra: str) -> EngineManager:
    """A fresh manager on ``volume`` (own prompt cache) that reuses the session's loaded engine."""
    return EngineManager(models.settings(volume, **extra), tts_factory=lambda _s: engine)


def test_engine_loaded_by_repo_id_offline(tiny_models: TinyModels, tiny_tts_engine) -> None:
    engine = tiny_tts_engine
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert engine.is_loaded() and engine.repo_id == tiny_models.tts_repo
    assert engine.revision and len(engine.revision) == 40  # the snapshot commit from refs/main
    assert engine.device == "cpu" and engine.dtype_name == "float32"
    assert engine.sample_rate == 24000


def test_prompt_and_generate(tiny_tts_engine) -> None:
    audio, sr = sf.read(io.BytesIO(clip()), dtype="float32")
    prompt = tiny_tts_engine.build_prompt([(audio, sr, "hello there")])
    assert prompt.arrays["ref_code"].ndim == 2 and prompt.arrays["ref_code"].dtype == np.int64
    assert prompt.arrays["ref_spk_embedding"].dtype == np.float32
    assert prompt.meta["icl_mode"] == "1" and prompt.meta["ref_text"] == "hello there"
    out = tiny_tts_engine.generate("this is a test", prompt, language="en", seed=1, instruct=None)
    assert out.dtype == np.float32 and out.ndim == 1
    assert out.size > 0 and np.isfinite(out).all()


def test_a_generation_logs_no_padding_notice(tiny_tts_engine) -> None:
    """transformers said "Setting `pad_token_id` to `eos_token_id`" on every generation; the engine sets the
    talker's pad token (the end-of-codes token, the same choice) when it loads."""
    audio, sr = sf.read(io.BytesIO(clip()), dtype="float32")
    prompt = tiny_tts_engine.build_prompt([(audio, sr, "hello there")])
    said: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    library = logging.getLogger(
        "transformers"
    )  # its own handler writes wherever stderr was at import
    keep = Keep()
    library.addHandler(keep)
    try:
        tiny_tts_engine.generate("this is a test", prompt, language="en", seed=1, instruct=None)
    finally:
        library.removeHandler(keep)
    assert not [line for line in said if "pad_token_id" in line]


def test_synthesize_wav_and_same_seed_same_audio(
    tiny_models: TinyModels,
    tiny_tts_engine,
    tmp_path: Path,
) -> None:
    mgr = manager(tiny_models, tiny_tts_engine, tmp_path / "v")
    samples = [(clip(), "hello there")]
    a = mgr.synthesize(samples, "Good morning. How are you today?", "en", 42, None)
    b = mgr.synthesize(samples, "Good morning. How are you today?", "en", 42, None)
    c = mgr.synthesize(samples, "Good morning. How are you today?", "en", 43, None)
    assert a.size / SR > 0 and a.dtype == np.float32
    assert float(np.sqrt(np.mean(a**2))) > 0.01  # audible noise, not silence
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # the seed really drives sampling
    from backend.storage.audio import encode_audio

    wav_a, wav_b, wav_c = (encode_audio(x, SR, "wav") for x in (a, b, c))
    assert wav_a == wav_b and wav_a != wav_c  # same seed → same bytes, at PCM16 too
    info = sf.info(io.BytesIO(wav_a))
    assert info.samplerate == 24000 and info.channels == 1 and info.duration > 0
    assert mgr.stats.prompt_builds == 1 and mgr.stats.prompt_cache_hits == 2


def test_long_text_is_chunked_and_nothing_dropped(
    tiny_models: TinyModels,
    tiny_tts_engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sentence = "The quick brown fox jumps over the lazy dog, again and again. "
    text = (sentence * 60)[:3000]
    seen: list[tuple[str, int | None]] = []
    lengths: list[int] = []
    real_generate = tiny_tts_engine.generate

    def recording(chunk, prompt, *, language, seed, instruct):  # type: ignore[no-untyped-def]
        seen.append((chunk, seed))
        out = real_generate(chunk, prompt, language=language, seed=seed, instruct=instruct)
        lengths.append(out.size)
        return out

    monkeypatch.setattr(tiny_tts_engine, "generate", recording)
    mgr = manager(tiny_models, tiny_tts_engine, tmp_path / "v")
    progress: list[tuple[int, int]] = []
    result = mgr.synthesize_detailed(
        [(clip(), "hello there")],
        text,
        "en",
        5,
        None,
        max_chunk_chars=800,
        crossfade_ms=50,
        on_progress=lambda d, t: progress.append((d, t)),
    )
    assert result.chunks == len(seen) >= 4
    assert [c for c, _ in seen] == split_text(text, 800)
    assert re.sub(r"\s", "", "".join(c for c, _ in seen)) == re.sub(r"\s", "", text)
    assert [s for _, s in seen] == [5 + i for i in range(len(seen))]
    assert progress[-1] == (len(seen), len(seen))
    overlap = int(0.05 * SR)
    expected = sum(lengths) - sum(min(overlap, a // 2, b // 2) for a, b in pairwise(lengths))
    assert result.audio.size == expected  # every chunk's audio is in the output
    assert result.duration > 0 and result.rtf > 0


def test_prompt_cache_hit_from_a_second_manager(
    tiny_models: TinyModels,
    tiny_tts_engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    volume = tmp_path / "v"
    samples = [(clip(3.0, 180.0), "first sample"), (clip(2.5, 240.0), "second sample")]
    first = manager(tiny_models, tiny_tts_engine, volume)
    a = first.synthesize(samples, "Hello.", "en", 3, None)
    assert first.stats.prompt_builds == 1
    assert len(list((volume / "voicebox" / "cache" / "prompts").rglob("*.safetensors"))) == 1

    # a new engine object loaded from the cache and a new manager: nothing shared in memory
    from backend.engines.qwen import QwenTTSEngine

    engine2 = QwenTTSEngine(tiny_models.settings())
    engine2.load()

    def no_build(_samples):  # type: ignore[no-untyped-def]
        raise AssertionError("the prompt was rebuilt instead of loaded from the volume")

    monkeypatch.setattr(engine2, "build_prompt", no_build)
    second = manager(tiny_models, engine2, volume)
    b = second.synthesize(samples, "Hello.", "en", 3, None)
    assert second.stats.prompt_builds == 0 and second.stats.prompt_cache_hits == 1
    assert second.prompt_cache.stats()["disk_hits"] == 1
    assert np.array_equal(a, b)  # the cached prompt is the same prompt

    # a changed sample (or order) is a different prompt: rebuilt
    monkeypatch.undo()
    third = manager(tiny_models, engine2, volume)
    third.synthesize(samples[::-1], "Hello.", "en", 3, None)
    assert third.stats.prompt_builds == 1


def test_second_worker_process_reuses_prompt(
    tiny_models: TinyModels,
    tiny_tts_engine,
    tmp_path: Path,
) -> None:
    """A second worker *process* loads the model offline and generates with zero prompt rebuilds."""
    volume = tmp_path / "v"
    tiny_models.copy_cache_to(volume)
    sample = tmp_path / "sample.wav"
    sample.write_bytes(clip())
    mgr = manager(tiny_models, tiny_tts_engine, volume)
    mgr.synthesize([(sample.read_bytes(), "hello there")], "Hi.", "en", 9, None)
    assert mgr.stats.prompt_builds == 1
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from tests.support import stub_torchaudio
stub_torchaudio.install()
from backend.config import load_settings
from backend.engines.manager import EngineManager
mgr = EngineManager(load_settings())
audio = mgr.synthesize([(open({str(sample)!r}, 'rb').read(), 'hello there')], 'Hi.', 'en', 9, None)
print(json.dumps({{"stats": mgr.stats.as_dict(), "n": int(audio.size),
                  "offline": __import__('os').environ.get('HF_HUB_OFFLINE')}}))
"""
    env = dict(os.environ)
    env.update(
        VOICEBOX_VOLUME=str(volume),
        VOICEBOX_LOCAL_DIR=str(tmp_path / "local2"),
        VOICEBOX_TTS_MODEL=tiny_models.tts_repo,
        VOICEBOX_STT_MODEL=tiny_models.stt_repo,
        VOICEBOX_DEVICE="cpu",
        HF_HOME=str(tmp_path / "elsewhere"),  # the worker must point the hub at the volume itself
        PYTHONPATH=str(ROOT),
    )
    env.pop("HF_HUB_OFFLINE", None)  # a complete snapshot must switch offline by itself
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["stats"]["prompt_builds"] == 0 and out["stats"]["prompt_cache_hits"] == 1
    assert out["n"] > 0 and out["offline"] == "1"


def test_prompt_cache_is_bounded_through_manager(
    tiny_models: TinyModels,
    tiny_tts_engine,
    tmp_path: Path,
) -> None:
    volume = tmp_path / "v"
    settings = tiny_models.settings(volume)
    cache = PromptCache(settings.cache_dir / "prompts", settings.tmp_dir, max_bytes=1)
    mgr = EngineManager(settings, tts_factory=lambda _s: tiny_tts_engine, prompt_cache=cache)
    mgr.synthesize([(clip(3.0, 200.0), "a")], "One.", "en", 1, None)
    mgr.synthesize([(clip(3.0, 300.0), "b")], "Two.", "en", 1, None)
    assert len(cache.entries()) == 1  # the newest entry is kept, older ones evicted


def test_streamed_pieces_are_the_whole_output_with_the_real_engine(
    tiny_models: TinyModels,
    tiny_tts_engine,
    tmp_path: Path,
) -> None:
    """Qwen3-TTS streamed chunk by chunk (``on_audio``) gives the samples of the non-streamed call with the same
    seed: the engine path, not only the fake, is reproducible and joined identically."""
    from backend.engines.manager import AudioPiece

    mgr = manager(tiny_models, tiny_tts_engine, tmp_path / "vol")
    samples = [(clip(), "hello there")]
    text = "First part of the text is here. Second part follows it now. Third part ends it."
    pieces: list[AudioPiece] = []
    streamed = mgr.synthesize_detailed(
        samples, text, seed=9, max_chunk_chars=40, on_audio=pieces.append
    )
    assert len(pieces) == streamed.chunks == 3
    assert np.array_equal(np.concatenate([p.audio for p in pieces]), streamed.audio)
    whole = mgr.synthesize(samples, text, seed=9, max_chunk_chars=40)
    assert np.array_equal(whole, streamed.audio)
    assert float(np.abs(whole).max()) > 0.01  # audible noise, not silence


def test_incremental_decoding_streams_inside_a_chunk(
    tiny_models: TinyModels,
    tiny_tts_engine,
    tmp_path: Path,
) -> None:
    """VOICEBOX_STREAM_DECODE_FRAMES: audio leaves every few codec frames while the talker still runs; the
    pieces are the result, and the result is the package's own decode within the bounded-context error."""
    from backend.engines.manager import AudioPiece

    mgr = manager(tiny_models, tiny_tts_engine, tmp_path / "vol", VOICEBOX_STREAM_DECODE_FRAMES="4")
    samples = [(clip(), "hello there")]
    text = "A single chunk of text for the incremental decoder."
    pieces: list[AudioPiece] = []
    streamed = mgr.synthesize_detailed(samples, text, seed=5, on_audio=pieces.append)
    assert streamed.chunks == 1 and len(pieces) > 2  # several pieces inside one chunk
    assert all(p.index == 0 for p in pieces) and pieces[-1].last
    assert np.array_equal(np.concatenate([p.audio for p in pieces]), streamed.audio)
    whole = mgr.synthesize(samples, text, seed=5)  # no on_audio: the package's one-piece decode
    assert abs(whole.size - streamed.audio.size) <= 1
    n = min(whole.size, streamed.audio.size)
    assert float(np.max(np.abs(whole[:n] - streamed.audio[:n]))) < 0.02
    assert float(np.abs(whole).max()) > 0.01
