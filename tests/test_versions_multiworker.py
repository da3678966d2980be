"""Versions on a shared volume: a version applied on worker A is visible on worker B, and a worker SIGKILLed
while it applies effects leaves either no new version or a complete one (file durable, hash matching)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.db.models import GenerationVersion
from backend.services.container import Services
from tests.support.api import add_generation
from volume_bootstrap.bootstrap import bootstrap
from volume_bootstrap.fsck import fsck_volume

pytestmark = pytest.mark.timeout(300)
ECHO = [{"type": "reverb", "params": {"room_size": 0.6}}, {"type": "pitch_shift", "params": {}}]
ROOT = Path(__file__).resolve().parents[1]

APPLY = """
import sys
from backend.config import load_settings
from backend.services.container import Services
services = Services.create(load_settings())
print("ready", flush=True)
services.versions.apply_effects(sys.argv[1], [{"type": "reverb", "params": {}}, {"type": "delay", "params": {}}])
print("done", flush=True)
"""


def _versions(services: Services, gen_id: str) -> list[GenerationVersion]:
    return services.versions.list(gen_id)


def test_a_version_applied_on_one_worker_is_visible_on_another(make_settings) -> None:  # type: ignore[no-untyped-def]
    first = make_settings()
    bootstrap(first, run_fsck=False)
    a, b = Services.create(first), Services.create(make_settings())
    try:
        gen = add_generation(a, profile_id=None, profile_name="Ann", seconds=2.0)
        assert len(_versions(b, gen)) == 1
        version = a.versions.apply_effects(gen, ECHO, set_as_default=True)
        seen = {v.id: v for v in _versions(b, gen)}
        assert version.id in seen and seen[version.id].is_default
        assert b.history.get(gen).audio_path == version.audio_path
        _, path = b.versions.audio_path(version.id)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == version.sha256
    finally:
        a.close()
        b.close()


def test_a_kill_during_apply_effects_leaves_no_version_or_a_complete_one(
    make_settings, subprocess_env
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    services = Services.create(settings)
    try:
        gen = add_generation(services, profile_id=None, profile_name="Ann", seconds=120.0)
        outcomes = []
        for i, delay in enumerate((0.0, 0.3, 0.8, 1.5, 3.0, 30.0)):
            before = {v.id for v in _versions(services, gen)}
            proc = subprocess.Popen(
                [sys.executable, "-c", APPLY, gen],
                env=subprocess_env(f"kill-{i}"),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            after = _versions(services, gen)
            new = [v for v in after if v.id not in before]
            assert len(new) <= 1
            for version in new:  # complete: its file is there, whole
                _, path = services.versions.audio_path(version.id)
                assert hashlib.sha256(path.read_bytes()).hexdigest() == version.sha256
            outcomes.append(len(new))
            assert sum(v.is_default for v in after) == 1
        report = fsck_volume(settings, services.db, repair=False)
        assert not report.missing_files  # no row lost its file
        assert (
            0 in outcomes
        )  # at least one kill landed before the row (the others may have finished)
    finally:
        services.close()


def test_fsck_completes_a_dead_workers_generation_with_its_version(make_settings) -> None:  # type: ignore[no-untyped-def]
    """A worker killed after its audio was durable: fsck completes the row and gives it its default version
    (every completed generation has one), so takes and effects work on it."""
    from datetime import timedelta

    from backend.db.models import Generation, new_id, utcnow
    from tests.support.api import audio_bytes

    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    services = Services.create(settings)
    try:
        gen_id = new_id()
        rel = f"generations/{gen_id}.wav"
        services.blobs.write_bytes(rel, audio_bytes(1.0))
        with services.db.write() as session:
            session.add(
                Generation(
                    id=gen_id,
                    text="t",
                    language="en",
                    audio_path=rel,
                    status="generating",
                    owner_worker_id="dead",
                    lease_expires_at=utcnow() - timedelta(seconds=5),
                )
            )
        report = fsck_volume(settings, services.db, repair=True)
        assert gen_id in report.expired_completed
        versions = _versions(services, gen_id)
        assert [(v.label, v.is_default, v.audio_path) for v in versions] == [
            ("original", True, rel)
        ]
    finally:
        services.close()
