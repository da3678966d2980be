"""Fixtures for API tests: a bootstrapped temp volume, its Settings, Services and an httpx client.

Use by listing ``"tests.support.api"`` in ``pytest_plugins`` (tests/conftest.py) or by importing the fixtures.
The volume is bootstrapped once per session and copied per test (a copy takes milliseconds, a bootstrap ~0.3 s).
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.config import Settings, load_settings
from backend.services.container import Services
from tests.support.audio import encode, tone
from tests.support.settings import worker_settings

#: The fixtures (registered for every test by ``pytest_plugins`` in tests/conftest.py).
__all__ = ["volume_template", "database_backend", "api_settings", "api_services", "api_client"]

#: the database backends a suite runs on: ``parametrize_backends`` below, or ``database_backend`` overridden
BACKENDS = ("sqlite", "postgresql")


def api_settings_for(
    volume: Path, local: Path, worker_id: str = "test-worker", **env: str
) -> Settings:
    """Settings for a test worker on ``volume`` with its private ``local`` folder."""
    base = {"VOICEBOX_WORKER_ID": worker_id, "VOICEBOX_LEASE_TIMEOUT": "30", **env}
    return worker_settings(volume, local, **base)


@pytest.fixture(scope="session")
def volume_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bootstrapped volume (layout + migrated database) that tests copy."""
    from volume_bootstrap.bootstrap import bootstrap

    root = tmp_path_factory.mktemp("volume-template")
    volume = root / "volume"
    volume.mkdir()
    bootstrap(api_settings_for(volume, root / "local"), run_fsck=False)
    return volume


def fresh_volume(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


@pytest.fixture
def database_backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` (the volume's database); a module runs on both with ``pytestmark = both_backends``."""
    return str(getattr(request, "param", "sqlite"))


#: ``pytestmark = both_backends`` in a module (or on one test) runs every test that uses the API fixtures on the
#: volume's SQLite and on PostgreSQL (tests/conftest.py: ``pytest_generate_tests``); other tests run once
both_backends = pytest.mark.both_backends


@pytest.fixture
def api_settings(
    tmp_path: Path, volume_template: Path, database_backend: str, request: pytest.FixtureRequest
) -> Settings:
    volume = fresh_volume(volume_template, tmp_path / "volume")
    env: dict[str, str] = {}
    if database_backend == "postgresql":
        env["VOICEBOX_DATABASE_URL"] = request.getfixturevalue("pg_migrated_url")
    return api_settings_for(volume, tmp_path / "local", **env)


@pytest.fixture
def api_services(api_settings: Settings) -> Iterator[Services]:
    services = Services.create(api_settings)
    try:
        yield services
    finally:
        services.close()


@pytest.fixture
def api_client(api_settings: Settings, api_services: Services) -> Iterator[TestClient]:
    """An httpx client (Starlette's TestClient) over the app on a fresh volume."""
    app = create_app(api_settings, services=api_services)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


# ---------------------------------------------------------------------------------------------- audio
def audio_bytes(
    seconds: float = 3.0,
    *,
    fmt: str = "WAV",
    subtype: str | None = "PCM_16",
    sr: int = 24000,
    channels: int = 1,
    amp: float = 0.3,
    seed: int = 0,
) -> bytes:
    """Encoded audio for uploads (``fmt`` in WAV, FLAC, OGG (Vorbis), MP3): a tone with a little noise, so
    it is neither silent nor perfectly compressible, and ``seed`` makes each clip its own."""
    return encode(
        tone(seconds, sr, amp=amp, noise=0.01, seed=seed),
        sr,
        fmt=fmt,
        subtype=subtype,
        channels=channels,
    )


def voicebox_v10_bundle(
    name: str = "Narrator",
    description: str | None = "warm voice",
    language: str = "en",
    samples: list[tuple[str, bytes, str]] | None = None,
    avatar: tuple[str, bytes] | None = None,
) -> bytes:
    """A profile zip exactly as Voicebox's ``export_profile_to_zip`` writes it (v1.0)."""
    if samples is None:
        samples = [("0b7a3c1e-6f1d-4c55-9a43-2f4d8f1e9a01.wav", audio_bytes(3.0), "Hello there.")]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if avatar is not None:
            zf.writestr(f"avatar{avatar[0]}", avatar[1])
        manifest = {
            "version": "1.0",
            "profile": {"name": name, "description": description, "language": language},
            "has_avatar": avatar is not None,
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2))
        mapping = {}
        for filename, data, text in samples:
            zf.writestr(f"samples/{filename}", data)
            mapping[filename] = text
        zf.writestr("samples.json", json.dumps(mapping, indent=2))
    return buf.getvalue()


PNG_1PX = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f"
    b"\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x03\x00\x08\xfc\x02\xfe\xa7\x9a\xa0\xa0\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


def files_under(root: Path) -> list[str]:
    """Every regular file under ``root`` (relative), for "nothing was written" checks."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def add_generation(
    services: object,
    *,
    profile_id: str | None,
    profile_name: str | None,
    text: str = "Hello from the history.",
    seconds: float = 1.5,
    status: str = "completed",
    created_offset_s: float = 0.0,
) -> str:
    """A finished generation as the generation service would leave it: file first, then the row."""
    from datetime import timedelta

    from backend.db.models import Generation, GenerationVersion, new_id, utcnow

    gen_id = new_id()
    rel = None
    blob = None
    if status == "completed":
        rel = f"generations/{gen_id}.wav"
        blob = services.blobs.write_bytes(rel, audio_bytes(seconds, seed=hash(text) % 1000))  # type: ignore[attr-defined]
    with services.db.write() as session:  # type: ignore[attr-defined]
        now = utcnow() + timedelta(seconds=created_offset_s)
        session.add(
            Generation(
                id=gen_id,
                profile_id=profile_id,
                profile_name=profile_name,
                text=text,
                language="en",
                audio_path=rel,
                duration=seconds if rel else None,
                status=status,
                sha256=blob.sha256 if blob else None,
                size_bytes=blob.size if blob else None,
                created_at=now,
                completed_at=now if rel else None,
                lease_expires_at=now + timedelta(minutes=5) if status == "generating" else None,
                owner_worker_id="test-worker",
            )
        )
        if (
            rel is not None
        ):  # a completed generation has its default version (migration 0004's shape)
            session.add(
                GenerationVersion(
                    id=gen_id,
                    generation_id=gen_id,
                    label="original",
                    audio_path=rel,
                    is_default=True,
                    duration=seconds,
                    sha256=blob.sha256 if blob else None,
                    size_bytes=blob.size if blob else None,
                    created_at=now,
                )
            )
    return gen_id


# ---------------------------------------------------------------------------------------------- workers
def worker_main(argv: list[str] | None = None) -> int:
    """One worker process on a shared volume: ``python -m tests.support.api worker N SHARED_ID``.

    Reads its volume, local dir and id from the environment, builds its own app and database copy, creates N
    profiles with a sample each, edits the shared profile and adds a sample to it; prints a JSON report.
    """
    import os
    import sys

    args = sys.argv[1:] if argv is None else argv
    count, shared = int(args[1]), args[2]
    settings = load_settings(os.environ)
    services = Services.create(settings)
    report: dict[str, object] = {"created": [], "edits": [], "samples": [], "errors": []}
    with TestClient(create_app(settings, services=services), raise_server_exceptions=False) as c:
        for i in range(count):
            name = f"{settings.worker_id}-{i}"
            r = c.post("/profiles", json={"name": name})
            if r.status_code != 200:
                report["errors"].append([name, r.status_code, r.text])  # type: ignore[union-attr]
                continue
            pid = r.json()["id"]
            report["created"].append(pid)  # type: ignore[union-attr]
            r = c.post(
                f"/profiles/{pid}/samples",
                files={"file": ("a.wav", audio_bytes(2.5, seed=i), "audio/wav")},
                data={"reference_text": name},
            )
            report["samples"].append(r.status_code)  # type: ignore[union-attr]
            r = c.put(
                f"/profiles/{shared}",
                json={"name": "Shared", "description": f"{settings.worker_id} edit {i}"},
            )
            report["edits"].append(r.status_code)  # type: ignore[union-attr]
        r = c.post(
            f"/profiles/{shared}/samples",
            files={"file": ("s.wav", audio_bytes(2.5, seed=99), "audio/wav")},
            data={"reference_text": f"shared from {settings.worker_id}"},
        )
        report["samples"].append(r.status_code)  # type: ignore[union-attr]
        r = c.put(f"/profiles/{shared}", json={"name": "Contested"})
        report["rename"] = r.status_code
    services.close()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        raise SystemExit(worker_main())
    raise SystemExit("usage: python -m tests.support.api worker COUNT SHARED_PROFILE_ID")
