"""Generation bundles carry ``versions[]`` (upstream's manifest field) and profile bundles the effects chain:
round trips with upstream-shaped bundles, every version file byte-identical."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.config import Settings
from backend.engines.manager import EngineManager
from backend.services.container import Services
from tests.support.api import audio_bytes
from tests.support.app_contract import GatedTTS
from tests.test_app_contract import profile_with_sample

pytestmark = [pytest.mark.timeout(120), pytest.mark.both_backends]
GEN_ID = "5d0f8a52-6c2b-4f4e-9c1a-1f0e2d3c4b5a"
CLEAN_ID = "6e1a9b63-7d3c-4a5f-8d2b-2a1f3e4d5c6b"
FX_ID = "7f2bac74-8e4d-4b60-9e3c-3b2a4f5e6d7c"
REVERB = [{"type": "reverb", "enabled": True, "params": {"room_size": 0.8}}]


@pytest.fixture
def app(api_settings: Settings) -> Iterator[TestClient]:
    tts = GatedTTS()
    tts.gate.set()
    services = Services.create(
        api_settings, engines=EngineManager(api_settings, tts_factory=lambda _s: tts)
    )
    with TestClient(create_app(api_settings, services=services)) as client:
        client.services = services  # type: ignore[attr-defined]
        yield client
    services.close()


def upstream_generation_bundle(clean: bytes, processed: bytes) -> bytes:
    """As upstream's ``export_generation_to_zip`` writes it: audio/<file> per version, the default flagged."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        manifest = {
            "version": "1.0",
            "generation": {
                "id": GEN_ID,
                "text": "Once upon a time.",
                "language": "en",
                "duration": 1.0,
                "seed": 3,
                "created_at": "2025-05-01T10:00:00",
            },
            "profile": {"id": None, "name": "Ghost", "language": "en"},
            "versions": [
                {
                    "id": CLEAN_ID,
                    "label": "original",
                    "is_default": False,
                    "effects_chain": None,
                    "filename": f"{GEN_ID}.wav",
                },
                {
                    "id": FX_ID,
                    "label": "reverb",
                    "is_default": True,
                    "effects_chain": json.dumps(REVERB),  # upstream stores the chain as JSON text
                    "source_version_id": CLEAN_ID,
                    "filename": f"{GEN_ID}_{FX_ID[:8]}.wav",
                },
            ],
        }
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr(f"audio/{GEN_ID}.wav", clean)
        zf.writestr(f"audio/{GEN_ID}_{FX_ID[:8]}.wav", processed)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_upstream_generation_bundle_with_two_versions_round_trips(app: TestClient) -> None:
    clean, processed = audio_bytes(1.0, seed=1), audio_bytes(1.0, seed=2)
    r = app.post(
        "/history/import",
        files={"file": ("g.zip", upstream_generation_bundle(clean, processed), "application/zip")},
    )
    assert r.status_code == 200, r.text
    row = app.get(f"/history/{GEN_ID}").json()
    versions = {v["id"]: v for v in row["versions"]}
    assert set(versions) == {CLEAN_ID, FX_ID} and row["active_version_id"] == FX_ID
    assert versions[FX_ID]["source_version_id"] == CLEAN_ID
    assert versions[FX_ID]["effects_chain"][0]["params"]["room_size"] == 0.8
    assert versions[CLEAN_ID]["label"] == "original" and not versions[CLEAN_ID]["is_default"]
    assert _sha(app.get(f"/audio/version/{CLEAN_ID}").content) == _sha(clean)
    assert _sha(app.get(f"/audio/version/{FX_ID}").content) == _sha(processed)
    assert _sha(app.get(f"/audio/{GEN_ID}").content) == _sha(processed)  # the default plays

    exported = app.get(f"/history/{GEN_ID}/export").content
    with zipfile.ZipFile(io.BytesIO(exported)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        files = {v["id"]: zf.read(f"audio/{v['filename']}") for v in manifest["versions"]}
    assert [v["is_default"] for v in manifest["versions"]] == [True, False]
    assert _sha(files[FX_ID]) == _sha(processed) and _sha(files[CLEAN_ID]) == _sha(clean)

    assert app.delete(f"/history/{GEN_ID}").status_code == 200
    r = app.post("/history/import", files={"file": ("g.zip", exported, "application/zip")})
    again = app.get(f"/history/{GEN_ID}").json()
    assert {v["id"]: v["label"] for v in again["versions"]} == {
        CLEAN_ID: "original",
        FX_ID: "reverb",
    }
    assert again["active_version_id"] == FX_ID


def test_a_bundle_version_without_its_file_writes_nothing(app: TestClient) -> None:
    data = upstream_generation_bundle(audio_bytes(1.0), audio_bytes(1.0, seed=2))
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            if not item.filename.startswith(f"audio/{GEN_ID}.wav"):
                dst.writestr(item, src.read(item))
    r = app.post("/history/import", files={"file": ("g.zip", buf.getvalue(), "application/zip")})
    assert r.status_code == 400 and "versions[0]" in r.json()["detail"]
    assert app.get("/history").json()["total"] == 0


def test_profile_bundle_carries_the_effects_chain(app: TestClient) -> None:
    pid = profile_with_sample(app)
    assert app.put(f"/profiles/{pid}/effects", json={"effects_chain": REVERB}).status_code == 200
    bundle = app.get(f"/profiles/{pid}/export").content
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["profile"]["effects_chain"][0]["type"] == "reverb"
    app.delete(f"/profiles/{pid}")
    r = app.post("/profiles/import", files={"file": ("p.zip", bundle, "application/zip")})
    assert r.status_code == 200, r.text
    assert r.json()["effects_chain"][0]["params"]["room_size"] == 0.8
