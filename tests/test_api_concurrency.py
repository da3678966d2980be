"""Two worker processes on one volume: concurrent creates, uploads and edits all land (or get 409)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from backend.app import create_app
from backend.db.models import Profile, ProfileSample
from backend.services.container import Services
from tests.support.api import api_settings_for, fresh_volume
from tests.support.settings import worker_env

ROOT = Path(__file__).resolve().parents[1]
PER_WORKER = 4


@pytest.mark.slow
def test_two_worker_processes_create_and_edit_concurrently(
    tmp_path: Path,
    volume_template: Path,
) -> None:
    volume = fresh_volume(volume_template, tmp_path / "shared-volume")
    settings = api_settings_for(volume, tmp_path / "parent")
    services = Services.create(settings)
    with TestClient(create_app(settings, services=services)) as client:
        shared = client.post("/profiles", json={"name": "Shared"}).json()["id"]

    procs = []
    for name in ("wa", "wb"):
        env = dict(os.environ)
        env.update(
            worker_env(
                volume,
                tmp_path / f"local-{name}",
                VOICEBOX_WORKER_ID=name,
                VOICEBOX_LEASE_TIMEOUT="60",
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.support.api", "worker", str(PER_WORKER), shared],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))

    for report in reports:
        assert report["errors"] == []
        assert len(report["created"]) == PER_WORKER
        assert set(report["samples"]) == {200}
        assert set(report["edits"]) <= {200, 409}
    # Renaming the shared profile to one new name: both succeed (same name on the same row) — never lost.
    assert {r["rename"] for r in reports} <= {200, 409}

    with services.db.read() as session:
        profiles = {p.id: p for p in session.scalars(select(Profile))}
        samples = list(session.scalars(select(ProfileSample)))
    created = [pid for r in reports for pid in r["created"]]
    assert set(created) | {shared} == set(profiles)
    by_profile: dict[str, int] = {}
    for s in samples:
        by_profile[s.profile_id] = by_profile.get(s.profile_id, 0) + 1
        assert services.blobs.exists(s.audio_path)
    assert all(by_profile.get(pid) == 1 for pid in created)
    assert by_profile[shared] == 2  # one sample from each worker
    assert profiles[shared].name == "Contested"
    assert profiles[shared].description is None or "edit" in profiles[shared].description
    services.close()


def test_two_in_process_workers_rename_conflict(tmp_path: Path, volume_template: Path) -> None:
    """Two workers (own database copies) renaming different profiles to one name: one gets 409."""
    volume = fresh_volume(volume_template, tmp_path / "v")
    s1 = api_settings_for(volume, tmp_path / "l1", worker_id="one")
    s2 = api_settings_for(volume, tmp_path / "l2", worker_id="two")
    sv1, sv2 = Services.create(s1), Services.create(s2)
    with (
        TestClient(create_app(s1, services=sv1)) as c1,
        TestClient(create_app(s2, services=sv2)) as c2,
    ):
        a = c1.post("/profiles", json={"name": "A"}).json()["id"]
        b = c2.post("/profiles", json={"name": "B"}).json()["id"]
        r1 = c1.put(f"/profiles/{a}", json={"name": "Same"})
        r2 = c2.put(f"/profiles/{b}", json={"name": "Same"})
        assert sorted([r1.status_code, r2.status_code]) == [200, 409]
        assert "Same" in (r1 if r1.status_code == 409 else r2).json()["detail"]
        assert {p["name"] for p in c1.get("/profiles").json()} == {
            "Same",
            "A" if r2.status_code == 200 else "B",
        }
    sv1.close()
    sv2.close()
