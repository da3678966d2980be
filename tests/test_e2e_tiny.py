"""End to end with the tiny REAL Qwen3-TTS Base and Whisper (random weights), loaded by repo id from the volume's
HF cache with the hub offline: profile + sample over HTTP → generate → a valid 24 kHz WAV and a complete row.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import soundfile
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.services.container import Services
from tests.support.api import audio_bytes
from volume_bootstrap.bootstrap import bootstrap

pytestmark = [pytest.mark.slow, pytest.mark.needs_torch]


@pytest.fixture
def tiny_worker(tiny_models, tmp_path: Path):
    volume = tmp_path / "volume"
    volume.mkdir()
    tiny_models.copy_cache_to(volume)
    settings = tiny_models.settings(volume, VOICEBOX_LOCAL_DIR=str(tmp_path / "local"))
    bootstrap(settings, run_fsck=False)
    services = Services.for_worker(settings)
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as c:
        c.services = services  # type: ignore[attr-defined]
        yield c
    services.close()


def test_clone_generate_and_transcribe_with_tiny_models(tiny_worker) -> None:
    pid = tiny_worker.post("/profiles", json={"name": "Tiny", "language": "en"}).json()["id"]
    r = tiny_worker.post(
        f"/profiles/{pid}/samples",
        files={"file": ("ref.wav", audio_bytes(3.0), "audio/wav")},
        data={"reference_text": "This is a reference clip."},
    )
    assert r.status_code == 200, r.text
    req = {"profile_id": pid, "text": "Hello from a tiny model.", "seed": 5, "language": "en"}
    first = tiny_worker.post("/generate?wait=true", json=req).json()
    assert first["status"] == "completed", first
    audio = tiny_worker.get(f"/audio/{first['id']}").content
    data, rate = soundfile.read(io.BytesIO(audio))
    assert rate == 24000 and data.ndim == 1 and len(data) > 0
    assert first["duration"] == pytest.approx(len(data) / rate, rel=1e-3)
    second = tiny_worker.post("/generate?wait=true", json=req).json()
    assert tiny_worker.get(f"/audio/{second['id']}").content == audio  # same seed, same bytes
    stats = tiny_worker.services.engines.stats  # type: ignore[attr-defined]
    assert stats.prompt_builds == 1 and stats.prompt_cache_hits >= 1
    t = tiny_worker.post("/transcribe", files={"file": ("a.wav", audio, "audio/wav")})
    assert t.status_code == 200 and isinstance(t.json()["text"], str)
