"""A symbolic link planted on the volume is never followed out of it (exports, imports, samples, audio, fsck)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.services.container import Services
from backend.storage.blobs import BlobStore, UnsafePathError
from tests.support.api import add_generation, audio_bytes
from volume_bootstrap.fsck import fsck_volume

SECRET = b"root:x:0:0:secret-outside-the-volume\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def test_export_symlink_is_not_followed(
    api_client: TestClient, api_services: Services, outside: Path
) -> None:
    exports = api_services.settings.exports_dir
    (exports / "passwd.txt").symlink_to(outside)
    r = api_client.get("/exports/passwd.txt")
    assert r.status_code == 400, r.text
    assert b"secret" not in r.content and "symbolic link" in r.json()["detail"]
    # a real export still downloads
    (exports / "real.wav").write_bytes(audio_bytes(0.5))
    assert api_client.get("/exports/real.wav").status_code == 200


def test_exports_folder_replaced_by_a_link_is_refused(
    api_client: TestClient, api_services: Services, outside: Path
) -> None:
    exports = api_services.settings.exports_dir
    for child in exports.iterdir():
        child.unlink()
    exports.rmdir()
    exports.symlink_to(outside.parent)
    r = api_client.get("/exports/passwd")
    assert r.status_code == 400 and b"secret" not in r.content


def test_sample_and_audio_files_swapped_for_links(
    api_client: TestClient, api_services: Services, outside: Path
) -> None:
    from tests.support.generation import add_profile_with_sample

    pid = add_profile_with_sample(api_services, "Linked")
    sample = api_client.get(f"/profiles/{pid}/samples").json()[0]
    file = api_services.settings.data_dir / sample["audio_path"]
    file.unlink()
    file.symlink_to(outside)
    r = api_client.get(f"/samples/{sample['id']}")
    assert r.status_code == 404 and b"secret" not in r.content

    gid = add_generation(api_services, profile_id=pid, profile_name="Linked")
    audio_rel = api_client.get(f"/history/{gid}").json()["audio_path"]
    audio = api_services.settings.data_dir / audio_rel
    audio.unlink()
    audio.symlink_to(outside)
    r = api_client.get(f"/audio/{gid}")
    assert r.status_code == 404 and b"secret" not in r.content

    blobs = BlobStore(api_services.settings)
    with pytest.raises(UnsafePathError):
        blobs.open(audio_rel)
    assert not blobs.exists(audio_rel)
    # fsck copes with the link (reports the file missing) instead of failing the boot
    report = fsck_volume(api_services.settings, api_services.db, repair=True, orphan_grace=0)
    assert any(audio_rel in m for m in report.missing_files)
    assert outside.read_bytes() == SECRET  # the target was never touched


def test_imports_name_that_is_a_link(api_client: TestClient, api_services: Services) -> None:
    imports = api_services.settings.imports_dir
    (imports / "x.zip").symlink_to("/etc/hostname")
    r = api_client.post("/profiles/import", files={"volume_name": (None, "x.zip")})
    assert r.status_code == 400 and "regular file" in r.json()["detail"]
