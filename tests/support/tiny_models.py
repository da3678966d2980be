"""Session fixtures: tiny real Qwen3-TTS Base and Whisper checkpoints in a real HF cache on a test volume.

The checkpoints come from ``backend.engines.tiny`` — the builder behind ``models install-demo`` — so the tests
exercise the demo's code. The hub is put offline for the whole session (``HF_HUB_OFFLINE=1``: no test may touch
the network, and without it hub 0.36 retries for 46 s). Building and loading are memoised per process, so the
fixtures stay cheap even if several test modules import them (each import makes its own fixture definition).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backend.config import Settings
from tests.support import stub_torchaudio
from tests.support.settings import worker_settings

_MEMO: dict[str, Any] = {}


@dataclass(frozen=True)
class TinyModels:
    volume: Path
    hf_home: Path
    tts_repo: str
    stt_repo: str

    def settings(self, volume: Path | None = None, **extra: str) -> Settings:
        """Settings on ``volume`` (default: the models' volume) naming the tiny repos, CPU."""
        env = {
            "VOICEBOX_TTS_MODEL": self.tts_repo,
            "VOICEBOX_STT_MODEL": self.stt_repo,
            "VOICEBOX_DEVICE": "cpu",
            "VOICEBOX_WORKER_ID": "tiny-test",
            **extra,
        }
        return worker_settings(volume or self.volume, (volume or self.volume) / "_local", **env)

    def copy_cache_to(self, volume: Path) -> Path:
        """Copy the HF cache (symlinks kept) onto another volume; returns its hf_home."""
        dst = volume / "huggingface"
        shutil.copytree(self.hf_home, dst, symlinks=True, dirs_exist_ok=True)
        return dst


def _offline_env(hf_home: Path) -> None:
    os.environ["HF_HOME"] = str(hf_home)
    os.environ["HF_HUB_CACHE"] = str(hf_home / "hub")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.pop("VOICEBOX_HF_OFFLINE_AUTO", None)


def build_tiny_models(base: Path) -> TinyModels:
    """Build (once per process) the tiny models into ``base/volume/huggingface``."""
    if "models" not in _MEMO:
        stub_torchaudio.install()
        from backend.engines.tiny import install_tiny_models

        volume = base / "volume"
        hf_home = volume / "huggingface"
        repos = install_tiny_models(
            hf_home, "voicebox-test/tiny-qwen3-tts-base", "voicebox-test/tiny-whisper"
        )
        _MEMO["models"] = TinyModels(volume, hf_home, repos["tts"], repos["stt"])
    return _MEMO["models"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory):
    """Repo ids of the tiny checkpoints, installed in a real HF cache; the hub is offline meanwhile."""
    saved = {
        k: os.environ.get(k)
        for k in (
            "HF_HOME",
            "HF_HUB_CACHE",
            "HF_HUB_OFFLINE",
            "HF_HUB_DISABLE_PROGRESS_BARS",
            "VOICEBOX_HF_OFFLINE_AUTO",
        )
    }
    models = build_tiny_models(tmp_path_factory.mktemp("tiny-models"))
    _offline_env(models.hf_home)
    yield models
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tiny_tts_engine(tiny_models: TinyModels):
    """One loaded tiny ``QwenTTSEngine`` for the session (import ≈10 s, first clone ≈17 s: share it)."""
    if "tts" not in _MEMO:
        from backend.engines.qwen import QwenTTSEngine

        engine = QwenTTSEngine(tiny_models.settings())
        engine.load()
        _MEMO["tts"] = engine
    return _MEMO["tts"]


@pytest.fixture(scope="session")
def tiny_stt_engine(tiny_models: TinyModels):
    """One loaded tiny ``WhisperSTTEngine`` for the session."""
    if "stt" not in _MEMO:
        from backend.engines.whisper import WhisperSTTEngine

        engine = WhisperSTTEngine(tiny_models.settings())
        engine.load()
        _MEMO["stt"] = engine
    return _MEMO["stt"]
