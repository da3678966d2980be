"""The offline demo: tiny random-weight models installed into the volume's HF cache.

Why: a pod or laptop with no network (and CI, and the RunPod Hub's test run on a fresh endpoint) can still run
the whole worker end to end — cache check, offline load, voice prompt, generation, transcription — with
``VOICEBOX_TTS_MODEL=voicebox-demo/tiny-qwen3-tts-base`` and ``VOICEBOX_STT_MODEL=voicebox-demo/tiny-whisper``.
The audio is noise (random weights). The builder is the same one the test fixtures use
(``backend.engines.tiny``), so the demo and the tests exercise identical code. The ``voicebox-demo/`` names are
reserved: a worker configured with one builds it locally when it is missing, and never downloads it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from backend.engines.tiny import DEMO_STT_REPO, DEMO_TTS_REPO, install_tiny_models

__all__ = ["DEMO_REPOS", "DEMO_STT_REPO", "DEMO_TTS_REPO", "demo_installed", "install_demo_models"]

log = logging.getLogger(__name__)
DEMO_REPOS = frozenset({DEMO_TTS_REPO, DEMO_STT_REPO})


def demo_installed(hf_home: Path) -> bool:
    from backend.engines.hfcache import check_snapshot

    return all(check_snapshot(Path(hf_home), repo).complete for repo in DEMO_REPOS)


def install_demo_models(hf_home: Path, *, force: bool = False) -> dict[str, str]:
    """Write both demo checkpoints into ``<hf_home>/hub`` unless already complete; return their repo ids."""
    if force or not demo_installed(hf_home):
        log.info("building the demo models into %s (random weights: the audio is noise)", hf_home)
        install_tiny_models(Path(hf_home), DEMO_TTS_REPO, DEMO_STT_REPO)
    return {"tts": DEMO_TTS_REPO, "stt": DEMO_STT_REPO}
