"""``voicebox/exports/`` retention: VOICEBOX_EXPORT_TTL_HOURS, applied by fsck at boot and while serving."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import backend.app as app_module
from backend.app import create_app
from backend.config import Settings
from backend.services.container import Services
from backend.storage.retention import ANSWER_GRACE_SECONDS, expire_exports
from volume_bootstrap.fsck import fsck_volume

HOUR = 3600.0


def _export(settings: Settings, name: str, age_hours: float) -> Path:
    path = settings.exports_dir / name
    path.write_bytes(b"x" * 10)
    then = time.time() - age_hours * HOUR
    os.utime(path, (then, then))
    return path


def test_old_exports_go_fresh_and_linked_ones_stay(api_settings: Settings, tmp_path: Path) -> None:
    old = _export(api_settings, "job-spill-old.json", 25)
    fresh = _export(api_settings, "job-spill-new.json", 23)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    os.utime(outside, (time.time() - 100 * HOUR,) * 2)
    (api_settings.exports_dir / "link.txt").symlink_to(outside)
    (api_settings.exports_dir / "folder").mkdir()
    report = expire_exports(api_settings)
    assert report.removed == ["job-spill-old.json"]
    assert not old.exists() and fresh.exists() and outside.read_text() == "keep"
    assert (api_settings.exports_dir / "link.txt").is_symlink()


def test_a_file_a_job_may_still_answer_with_is_kept(api_settings: Settings) -> None:
    """Even with a tiny TTL, a spill younger than the job timeout plus the fetch grace stays."""
    settings = api_settings.with_overrides(export_ttl_hours=0.001, job_timeout_seconds=570.0)
    answering = _export(settings, "job-spill-running.wav", 0.2)  # 12 minutes old
    floor_hours = (570.0 + ANSWER_GRACE_SECONDS) / HOUR
    gone = _export(settings, "job-spill-done.wav", floor_hours + 0.05)
    assert expire_exports(settings).removed == [gone.name]
    assert answering.exists()


def test_ttl_zero_keeps_everything(api_settings: Settings) -> None:
    settings = api_settings.with_overrides(export_ttl_hours=0.0)
    path = _export(settings, "ancient.zip", 10_000)
    assert expire_exports(settings).removed == [] and path.exists()


def test_fsck_applies_it_and_reports(api_settings: Settings, api_services: Services) -> None:
    _export(api_settings, "a.json", 48)
    dry = fsck_volume(api_settings, api_services.db, repair=False)
    assert dry.exports_expired == [] and (api_settings.exports_dir / "a.json").exists()
    report = fsck_volume(api_settings, api_services.db, repair=True, bounded=True)
    assert report.exports_expired == ["a.json"]
    assert report.as_dict()["counts"]["exports_expired"] == 1


def test_boot_applies_it(api_settings: Settings) -> None:
    from volume_bootstrap.bootstrap import bootstrap

    path = _export(api_settings, "boot.json", 30)
    report = bootstrap(api_settings)
    assert report.fsck is not None and report.fsck["exports_expired"] == ["boot.json"]
    assert not path.exists()


def test_a_running_app_applies_it_periodically(
    api_settings: Settings, api_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "EXPIRY_INTERVAL_SECONDS", 0.05)
    with TestClient(create_app(api_settings, services=api_services)):
        path = _export(api_settings, "later.json", 30)
        deadline = time.monotonic() + 10
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not path.exists()
