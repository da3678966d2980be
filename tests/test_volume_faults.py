"""A full or read-only volume answers 507/503 naming the fault (never a path, never a 500, never blamed on the
client), leaves nothing partial, turns /health ``degraded`` with the reason, and bootstrap says it in one line."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.db.sqlite_files import version_key
from backend.services.container import Services
from tests.support.api import api_settings_for
from tests.support.audio import wav_bytes
from volume_bootstrap.bootstrap import bootstrap

ROOT = Path(__file__).resolve().parents[1]


def volume_files(settings) -> set[str]:
    data = settings.data_dir
    return {
        p.relative_to(data).as_posix()
        for p in data.rglob("*")
        if p.is_file() and "lease" not in p.name
    }


def assert_no_path(response, settings) -> None:
    assert str(settings.volume) not in response.text
    assert "/tmp" not in response.text and "Errno" not in response.text


def test_enospc_on_publish_is_507_and_nothing_partial(api_client, api_services, monkeypatch):
    import backend.db.volume_db as volume_db

    settings = api_services.settings
    assert api_client.post("/profiles", json={"name": "kept", "language": "en"}).status_code == 200
    before_key, before_files = version_key(settings.db_path), volume_files(settings)

    def full_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(volume_db.os, "fsync", full_fsync)
    r = api_client.post("/profiles", json={"name": "lost", "language": "en"})
    assert r.status_code == 507, r.text
    assert "volume is full" in r.json()["detail"] and r.headers["Retry-After"]
    assert_no_path(r, settings)
    assert version_key(settings.db_path) == before_key  # the shared file was not touched
    assert volume_files(settings) == before_files  # no temp file left beside it
    health = api_client.get("/health").json()
    assert health["status"] == "degraded" and "volume full" in health["reasons"]
    monkeypatch.undo()
    names = [p["name"] for p in api_client.get("/profiles").json()]
    assert names == ["kept"]


def test_enospc_during_an_upload_is_507_not_the_clients_fault(
    api_client, api_services, monkeypatch
):
    import backend.api.uploads as uploads

    settings = api_services.settings
    pid = api_client.post("/profiles", json={"name": "p", "language": "en"}).json()["id"]
    real_open = open

    class FullFile:
        def __init__(self, path, mode):
            self._file = real_open(path, mode)
            self.closed = False

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(settings.tmp_dir / "x.part"))

        def close(self):
            self.closed = True
            self._file.close()

    monkeypatch.setattr(uploads, "open", FullFile, raising=False)
    r = api_client.post(
        f"/profiles/{pid}/samples",
        files={"file": ("s.wav", wav_bytes(3.0, amp=0.0), "audio/wav")},
        data={"reference_text": "hello"},
    )
    assert r.status_code == 507, r.text
    assert "volume is full" in r.json()["detail"] and "multipart" not in r.text
    assert_no_path(r, settings)
    assert list(settings.tmp_dir.iterdir()) == []


def test_erofs_on_the_lease_is_503_read_only(api_client, api_services, monkeypatch):
    import backend.db.volume_db as volume_db

    settings = api_services.settings
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).startswith(str(settings.volume)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    r = api_client.post("/profiles", json={"name": "x", "language": "en"})
    assert r.status_code == 503, r.text
    assert "read-only" in r.json()["detail"]
    assert_no_path(r, settings)
    assert api_client.get("/profiles").status_code == 200  # reads keep working
    assert "volume read-only" in api_client.get("/health").json()["reasons"]
    assert volume_db  # the lease is taken through os.open in this module's process


@pytest.mark.parametrize(
    ("how", "reason"), [("empty", "database empty"), ("gone", "database missing")]
)
def test_health_is_degraded_when_the_database_is_gone(api_client, api_services, how, reason):
    assert api_client.get("/health").json()["status"] == "healthy"
    db_path = api_services.settings.db_path
    if how == "empty":
        db_path.write_bytes(b"")
    else:
        db_path.unlink()
    health = api_client.get("/health").json()
    assert health["status"] == "degraded" and reason in health["reasons"]
    assert str(api_services.settings.volume) not in str(health)


def test_health_is_degraded_on_a_stuck_lease(api_client, api_services):
    settings = api_services.settings
    settings.lease_path.write_text("token=someone\n")
    old = (
        os.stat(settings.lease_path).st_mtime - settings.lease_timeout - settings.lease_seconds - 5
    )
    os.utime(settings.lease_path, (old, old))
    assert any(
        r.startswith("lease unreachable") for r in api_client.get("/health").json()["reasons"]
    )


def test_bootstrap_on_a_read_only_volume_prints_one_line(make_settings, monkeypatch, capsys):
    """``probe_writable``'s clean-up ``unlink`` raises EROFS too; it must not hide the one-line verdict."""
    from backend.cli import main

    settings = make_settings()
    real_open, real_unlink = os.open, Path.unlink

    def refusing_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).startswith(str(settings.volume)) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    def refusing_unlink(self, missing_ok=False):  # type: ignore[no-untyped-def]
        if str(self).startswith(str(settings.volume)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(Path, "unlink", refusing_unlink)
    monkeypatch.setenv("VOICEBOX_VOLUME", str(settings.volume))
    monkeypatch.setenv("VOICEBOX_LOCAL_DIR", str(settings.local_dir))
    assert main(["bootstrap"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("voicebox-worker")]
    assert len(lines) == 1 and "read-only" in lines[0]


# ------------------------------------------------------------------------- a real small tmpfs (root only)
@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_really_full_then_read_only_volume(tmpfs: Path, tmp_path: Path) -> None:
    settings = api_settings_for(tmpfs, tmp_path / "local")
    bootstrap(settings, run_fsck=False)
    services = Services.create(settings)
    app = create_app(settings, services=services)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            pid = client.post("/profiles", json={"name": "kept", "language": "en"}).json()["id"]
            before_key, before_files = version_key(settings.db_path), volume_files(settings)
            filler = tmpfs / "filler"
            with open(filler, "wb") as handle:  # fill the volume to the last block
                try:
                    while True:
                        handle.write(b"\0" * 65536)
                        handle.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
            answers = [
                client.post("/profiles", json={"name": "x", "language": "en"}),
                client.post(
                    f"/profiles/{pid}/samples",
                    files={"file": ("s.wav", wav_bytes(3.0, amp=0.0), "audio/wav")},
                    data={"reference_text": "hello"},
                ),
            ]
            for r in answers:
                assert r.status_code == 507, r.text
                assert "volume is full" in r.json()["detail"]
                assert_no_path(r, settings)
            assert version_key(settings.db_path) == before_key
            assert volume_files(settings) == before_files  # nothing partial anywhere
            health = client.get("/health").json()
            assert "volume full" in health["reasons"]
            filler.unlink()
            subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
            r = client.post("/profiles", json={"name": "y", "language": "en"})
            assert r.status_code == 503 and "read-only" in r.json()["detail"], r.text
            assert_no_path(r, settings)
            assert "volume read-only" in client.get("/health").json()["reasons"]
            assert client.get("/profiles").status_code == 200
    finally:
        services.close()
    env = dict(os.environ, VOICEBOX_VOLUME=str(tmpfs), VOICEBOX_LOCAL_DIR=str(tmp_path / "l2"))
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "backend.cli", "bootstrap"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = [x for x in done.stderr.splitlines() if x.startswith("voicebox-worker")]
    assert len(lines) == 1 and "read-only" in lines[0], done.stderr


def test_generation_that_hits_a_full_volume_answers_507(api_settings, monkeypatch):
    from tests.support.api import audio_bytes

    settings = api_settings
    api_services = Services.for_worker(settings)
    with TestClient(create_app(settings, services=api_services)) as api_client:
        _generate_on_a_full_volume(api_client, api_services, settings, monkeypatch, audio_bytes)
    api_services.close()


def _generate_on_a_full_volume(api_client, api_services, settings, monkeypatch, audio_bytes):  # type: ignore[no-untyped-def]
    pid = api_client.post("/profiles", json={"name": "g", "language": "en"}).json()["id"]
    r = api_client.post(
        f"/profiles/{pid}/samples",
        files={"file": ("s.wav", audio_bytes(3.0), "audio/wav")},
        data={"reference_text": "hello"},
    )
    assert r.status_code == 200, r.text
    real_write = api_services.blobs.write_bytes

    def full(rel, data):  # type: ignore[no-untyped-def]
        if rel.startswith("generations/"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(settings.data_dir / rel))
        return real_write(rel, data)

    monkeypatch.setattr(api_services.blobs, "write_bytes", full)
    r = api_client.post("/generate?wait=true", json={"profile_id": pid, "text": "Hello there."})
    assert r.status_code == 507, r.text
    assert "volume is full" in r.json()["detail"]
    assert_no_path(r, settings)
    (row,) = api_client.get("/history").json()["items"]
    assert row["status"] == "failed" and "volume is full" in row["error"]
    assert str(settings.volume) not in row["error"]
    assert not [p for p in (settings.data_dir / "generations").rglob("*") if p.is_file()]
