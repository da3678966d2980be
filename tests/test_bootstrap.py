"""Cold start on the volume: idempotence, the JSON line, and the faults that must stop a worker cleanly."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.cli import main
from backend.db.errors import DatabaseCorruptError, VolumeError
from migrations.runner import head_revision
from volume_bootstrap.bootstrap import bootstrap
from volume_bootstrap.migrate import list_backups

ROOT = Path(__file__).resolve().parents[1]


def test_second_bootstrap_changes_nothing(make_settings) -> None:
    settings = make_settings()
    first = bootstrap(settings)
    assert first.migration["action"] == "created" and first.created
    before = {p: p.stat().st_mtime_ns for p in settings.volume.rglob("*") if p.is_file()}
    second = bootstrap(make_settings())
    assert second.created == [] and second.migration["action"] == "current"
    after = {p: p.stat().st_mtime_ns for p in settings.volume.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if "lease" not in k.name} == {
        k: v for k, v in before.items() if "lease" not in k.name
    }
    assert list_backups(settings) == []


def test_cli_prints_one_json_line_of_phase_timings(subprocess_env) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backend.cli", "bootstrap"],
        env=subprocess_env("cli"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert set(report["phases_ms"]) >= {"layout", "hf_env", "migrate", "fsck", "total"}
    assert report["migration"]["to_revision"] == head_revision()
    assert os.environ.get("HF_HOME") != report["volume"]  # the child set it, not us


def test_missing_volume_exits_with_one_line(tmp_path, capsys, monkeypatch) -> None:
    missing = tmp_path / "not-mounted"
    monkeypatch.setenv("VOICEBOX_VOLUME", str(missing))
    monkeypatch.setenv("VOICEBOX_LOCAL_DIR", str(tmp_path / "local"))
    assert main(["bootstrap"]) == 1
    err = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("voicebox-worker")
    ]
    assert len(err) == 1 and "does not exist" in err[0]
    assert not missing.exists()


@pytest.mark.parametrize(
    ("code", "needle"),
    [(errno.EROFS, "read-only"), (errno.ENOSPC, "full"), (errno.EACCES, "read-only")],
)
def test_unwritable_volume_stops_before_creating_anything(make_settings, monkeypatch, code, needle):
    settings = make_settings()
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).startswith(str(settings.volume)) and flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(VolumeError, match=needle):
        bootstrap(settings)
    assert list(settings.volume.iterdir()) == []  # nothing half-created


def test_corrupt_shared_database_points_at_backup_and_restore(make_settings, capsys) -> None:
    settings = make_settings()
    bootstrap(settings)
    assert main_with(settings, ["db", "backup", "--json"]) == 0
    backup = json.loads(capsys.readouterr().out)["backup"]
    settings.db_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseCorruptError) as info:
        bootstrap(make_settings())
    assert backup in str(info.value) and "db restore" in str(info.value)
    assert main_with(settings, ["db", "restore", backup]) == 0
    assert bootstrap(make_settings()).migration["action"] == "current"


def main_with(settings, argv: list[str]) -> int:
    env = {"VOICEBOX_VOLUME": str(settings.volume), "VOICEBOX_LOCAL_DIR": str(settings.local_dir)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return main(argv)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_volume_probe_route(api_client) -> None:
    r = api_client.post("/volume/probe", json={"quick": True})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["verdict"]["atomic_rename"] == "holds"
    assert "/" not in json.dumps(report["peers"])  # no server paths beyond the volume root line
    assert api_client.post("/volume/probe", json={"peer_wait": 1000}).status_code == 422
