"""`volume probe` on a local folder, and `volume fsck` on stale temp files and orphans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from backend.db.models import Profile, ProfileSample
from backend.db.volume_db import VolumeDatabase
from backend.storage.probe import run_probe
from migrations.runner import head_revision
from volume_bootstrap.bootstrap import bootstrap
from volume_bootstrap.fsck import fsck_volume

ROOT = Path(__file__).resolve().parents[1]


def test_probe_reports_guarantees_on_local_disk(make_settings) -> None:
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    report = run_probe(settings, quick=True).as_dict()
    assert report["checks"]["exclusive_create"] is True
    assert report["checks"]["rename_atomic"]["ok"] is True
    assert report["checks"]["rename_atomic"]["reads"] > 10
    assert report["timings_ms"]["rename"]["n"] == 20
    assert "1MB" in report["timings_ms"]["publish"]
    assert report["checks"]["lease_takeover_seconds"] < 5
    assert report["verdict"]["leased_snapshot_swap"].startswith("safe")
    assert not list((settings.data_dir / ".probe").glob("*-*/*"))


def test_two_probes_at_once_see_each_other(subprocess_env) -> None:
    cmd = [sys.executable, "-m", "backend.cli", "volume", "probe", "--quick", "--json"]
    procs = [
        subprocess.Popen(
            cmd + ["--peer-wait", "15"],
            env=subprocess_env(f"probe{i}"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        report = json.loads(out)
        assert report["peers"]["peer_seen"] is True
        assert report["verdict"]["posix_locks_cross_workers"] == "yes"  # same kernel: flock crosses


def test_fsck_removes_stale_tmp_and_trashes_old_orphans(make_settings) -> None:
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    db = VolumeDatabase(settings, expected_revision=head_revision())
    old = time.time() - 2 * 86400
    stale = settings.tmp_dir / "dead.part"
    stale.write_bytes(b"x")
    os.utime(stale, (old, old))
    fresh = settings.tmp_dir / "inflight.part"
    fresh.write_bytes(b"x")
    orphan = settings.data_dir / "generations" / "2026-01" / "orphan.wav"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"RIFF")
    os.utime(orphan, (old, old))
    young_orphan = settings.data_dir / "generations" / "2026-01" / "young.wav"
    young_orphan.write_bytes(b"RIFF")
    with db.write() as session:
        p = Profile(name="p")
        session.add(p)
        session.flush()
        session.add(
            ProfileSample(profile_id=p.id, audio_path="profiles/x/gone.wav", reference_text="t")
        )
    dry = fsck_volume(settings, db, repair=False)
    assert dry.tmp_removed == 1 and stale.exists()  # dry run changes nothing
    report = fsck_volume(settings, db, repair=True)
    assert not stale.exists() and fresh.exists()
    assert report.orphans_seen == ["generations/2026-01/orphan.wav"]
    assert not orphan.exists() and young_orphan.exists()
    assert len(list(settings.trash_dir.iterdir())) == 1
    assert report.missing_files and report.missing_files[0].endswith("profiles/x/gone.wav")
