"""Fill the caches a cold start would otherwise fill, at image build: ``python -m backend.engines.prewarm``.

Why: the first voice prompt and generation of a fresh container JIT-compile librosa's numba kernels (written to
``NUMBA_CACHE_DIR``, set by the Dockerfile) and compile the bytecode of every module on the path. Doing it once
at build, with the offline demo models in a throwaway directory, moves that cost out of every cold start. The
path is the worker's own: settings, the engine manager, a voice prompt, one generation and one transcription.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["prewarm"]


def _tone_wav(seconds: float = 1.0, rate: int = 24_000) -> bytes:
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate), dtype=np.float32) / rate
    buf = io.BytesIO()
    sf.write(buf, 0.2 * np.sin(2 * np.pi * 220.0 * t), rate, format="WAV")
    return buf.getvalue()


def prewarm(workdir: Path) -> dict[str, float]:
    """Run the worker's model path once on the demo models under ``workdir``; return seconds per step."""
    from backend.config import load_settings
    from backend.engines.demo import DEMO_STT_REPO, DEMO_TTS_REPO, install_demo_models
    from backend.engines.manager import EngineManager

    settings = load_settings(
        {
            "VOICEBOX_VOLUME": str(workdir / "volume"),
            "VOICEBOX_LOCAL_DIR": str(workdir / "local"),
            "VOICEBOX_TTS_MODEL": DEMO_TTS_REPO,
            "VOICEBOX_STT_MODEL": DEMO_STT_REPO,
            "VOICEBOX_DEVICE": "cpu",
        }
    )
    steps: dict[str, float] = {}

    def timed(name: str, step):
        started = time.perf_counter()
        result = step()
        steps[name] = round(time.perf_counter() - started, 3)
        return result

    timed("install_demo", lambda: install_demo_models(settings.hf_home))
    manager = EngineManager(settings)
    timed("load", manager.load_all)
    wav = _tone_wav()
    timed("generate", lambda: manager.synthesize([(wav, "A short tone.")], "Warm up."))
    timed("transcribe", lambda: manager.transcribe(wav))
    manager.close()
    return steps


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="voicebox-prewarm-") as tmp:
        steps = prewarm(Path(tmp))
    steps["total"] = round(time.perf_counter() - started, 3)
    print(json.dumps({"event": "prewarm", "steps_s": steps}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
