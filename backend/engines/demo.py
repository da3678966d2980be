"""The offline demo: tiny random-weight models installed into the volume's HF cache.

Why: a pod or laptop with no network (and CI) can still run the whole worker end to end — cache check, offline
load, voice prompt, generation, transcription — with ``VOICEBOX_TTS_MODEL=voicebox-demo/tiny-qwen3-tts-base`` and
``VOICEBOX_STT_MODEL=voicebox-demo/tiny-whisper``. The audio is noise (random weights). The builder is the same
one the test fixtures use (``backend.engines.tiny``), so the demo and the tests exercise identical code.
"""

from __future__ import annotations

from pathlib import Path

from backend.engines.tiny import DEMO_STT_REPO, DEMO_TTS_REPO, install_tiny_models

__all__ = ["DEMO_STT_REPO", "DEMO_TTS_REPO", "install_demo_models"]


def install_demo_models(hf_home: Path) -> dict[str, str]:
    """Write both demo checkpoints into ``<hf_home>/hub``; return ``{"tts": repo, "stt": repo}``."""
    return install_tiny_models(Path(hf_home), DEMO_TTS_REPO, DEMO_STT_REPO)
