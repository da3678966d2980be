"""Engine costs with the tiny real Qwen3-TTS Base (random weights, CPU): model load through our cache path
(repo id → completeness check → offline load) vs a bare ``from_pretrained(local_dir)``, and a voice prompt served
from the volume cache vs rebuilt. Ratios are against the baseline measured in the same run.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from backend.config import load_settings


def _wav(seconds: float = 3.0) -> bytes:
    t = np.arange(int(seconds * 24000)) / 24000
    buf = io.BytesIO()
    soundfile.write(
        buf, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 24000, format="WAV"
    )
    return buf.getvalue()


def run(short: bool = False) -> list[dict]:
    from backend.engines.hfcache import configure_hf_env
    from backend.engines.manager import EngineManager
    from backend.engines.qwen import QwenTTSEngine, import_qwen_tts
    from backend.engines.tiny import install_tiny_models

    repeats = 3 if short else 7
    with tempfile.TemporaryDirectory() as tmp:
        volume = Path(tmp) / "volume"
        settings = load_settings(
            {
                "VOICEBOX_VOLUME": str(volume),
                "VOICEBOX_LOCAL_DIR": str(Path(tmp) / "local"),
                "VOICEBOX_TTS_MODEL": "voicebox-bench/tiny-qwen3-tts-base",
                "VOICEBOX_STT_MODEL": "fake",
                "VOICEBOX_DEVICE": "cpu",
            }
        )
        (volume / "voicebox" / ".tmp").mkdir(parents=True)
        configure_hf_env(settings)
        install_tiny_models(settings.hf_home, settings.tts_model, "voicebox-bench/tiny-whisper")
        import_qwen_tts()
        from qwen_tts import Qwen3TTSModel

        ours, bare = [], []
        for _ in range(repeats):
            engine = QwenTTSEngine(settings)
            started = time.perf_counter()
            engine.load()
            ours.append(time.perf_counter() - started)
            snapshot = engine.snapshot_path
            engine.unload()
            started = time.perf_counter()
            model = Qwen3TTSModel.from_pretrained(str(snapshot), device_map="cpu")
            bare.append(time.perf_counter() - started)
            del model
        load_ours, load_bare = statistics.median(ours), statistics.median(bare)

        samples = [(_wav(), "a reference clip for the benchmark")]
        manager = EngineManager(settings)
        manager.tts()
        manager.voice_prompt(
            samples
        )  # warm numba/librosa once so both sides compare like with like
        rebuild, hit = [], []
        for i in range(repeats):
            fresh = [(_wav(3.0 + 0.01 * (i + 1)), f"clip {i}")]  # new content: a cache miss
            started = time.perf_counter()
            manager.voice_prompt(fresh)
            rebuild.append(time.perf_counter() - started)
            # a second worker: empty memory cache, prompt from the volume; it shares the loaded model so
            # only the prompt path is measured
            other = EngineManager(settings, tts_factory=lambda _s: manager.tts())
            started = time.perf_counter()
            _, cached = other.voice_prompt(fresh)
            hit.append(time.perf_counter() - started)
            assert cached
        p_rebuild, p_hit = statistics.median(rebuild), statistics.median(hit)
    return [
        {
            "bench": "tiny Qwen load: bare from_pretrained(local_dir)",
            "p50_ms": round(load_bare * 1000, 1),
            "ratio": 1.0,
        },
        {
            "bench": "tiny Qwen load: our path (repo id, cache check, offline)",
            "p50_ms": round(load_ours * 1000, 1),
            "ratio": round(load_ours / load_bare, 2),
        },
        {
            "bench": "voice prompt: rebuilt from the sample",
            "p50_ms": round(p_rebuild * 1000, 1),
            "ratio": 1.0,
        },
        {
            "bench": "voice prompt: volume cache hit (second worker)",
            "p50_ms": round(p_hit * 1000, 1),
            "ratio": round(p_hit / p_rebuild, 5),
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
