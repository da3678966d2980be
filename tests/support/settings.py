"""The one builder of a test worker's environment (``VOICEBOX_*``) and of its ``Settings``.

Stdlib and ``backend.config`` only: the client venv imports it through tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

from backend.config import Settings, load_settings


def worker_env(volume: Path, local: Path, **extra: str) -> dict[str, str]:
    """A worker on ``volume`` with its private folder ``local``, the fake engines, and reads that see a peer's
    write at once; ``extra`` adds variables or overrides these."""
    env = {
        "VOICEBOX_VOLUME": str(volume),
        "VOICEBOX_LOCAL_DIR": str(local),
        "VOICEBOX_DB_REFRESH_SECONDS": "0",
        "VOICEBOX_TTS_MODEL": "fake",
        "VOICEBOX_STT_MODEL": "fake",
    }
    env.update(extra)
    return env


def worker_settings(volume: Path, local: Path, **extra: str) -> Settings:
    """``load_settings(worker_env(...))``."""
    return load_settings(worker_env(volume, local, **extra))
