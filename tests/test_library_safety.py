"""Never lose a library: a missing, empty or table-less database is refused when the volume holds one; backups
are verified and rotate; fsck never trashes a library wholesale, and trash can be restored."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from backend.cli import main
from backend.db.backups import (
    STAMP_FORMAT,
    BackupRefusedError,
    inspect_database,
    library_evidence,
    list_backups,
    rotate,
    take_backup,
)
from backend.db.errors import DatabaseError, LibraryMissingError
from backend.db.models import Profile, ProfileSample
from backend.db.volume_db import VolumeDatabase
from migrations.runner import head_revision
from volume_bootstrap.bootstrap import bootstrap
from volume_bootstrap.fsck import ORPHAN_MOVE_FLOOR, fsck_volume


def run_cli(settings, argv: list[str], capsys) -> tuple[int, str, str]:
    env = {"VOICEBOX_VOLUME": str(settings.volume), "VOICEBOX_LOCAL_DIR": str(settings.local_dir)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    capsys.readouterr()
    try:
        code = main(argv)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    out, err = capsys.readouterr()
    return code, out, err


def make_library(settings, samples: int = 2) -> list:
    """A bootstrapped volume with one profile and ``samples`` sample files, all older than fsck's grace."""
    bootstrap(settings, run_fsck=False)
    db = VolumeDatabase(settings, expected_revision=head_revision())
    files = []
    with db.write() as session:
        profile = Profile(name="narrator")
        session.add(profile)
        session.flush()
        for i in range(samples):
            rel = f"profiles/{profile.id}/s{i}.wav"
            path = settings.data_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"RIFF" + bytes(100))
            files.append(path)
            session.add(ProfileSample(profile_id=profile.id, audio_path=rel, reference_text="t"))
    old = time.time() - 3 * 86400
    for path in files:
        os.utime(path, (old, old))
    return files


def break_database(settings, how: str) -> None:
    if how == "zero-byte":
        settings.db_path.write_bytes(b"")
    elif how == "missing":
        settings.db_path.unlink()
    else:  # a valid SQLite file with no tables
        settings.db_path.unlink()
        sqlite3.connect(settings.db_path).execute("PRAGMA user_version=1").connection.close()


@pytest.mark.parametrize("how", ["zero-byte", "missing", "table-less"])
def test_broken_database_with_library_files_is_refused(make_settings, capsys, how) -> None:
    settings = make_settings()
    files = make_library(settings)
    backups = list_backups(settings)
    assert backups, "the first write with rows takes a rotating backup"
    break_database(settings, how)
    before = settings.db_path.read_bytes() if settings.db_path.exists() else None

    code, out, err = run_cli(make_settings(), ["bootstrap"], capsys)

    assert code == 3 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("voicebox-worker")]
    assert len(lines) == 1, err
    line = lines[0]
    state = {"zero-byte": "empty", "missing": "missing", "table-less": "without tables"}[how]
    assert f"database is {state}" in line and "file(s) under profiles/" in line
    assert f"voicebox-worker db restore {backups[0].name}" in line and "(3 rows)" in line
    assert all(path.exists() for path in files)  # nothing trashed
    assert not any(settings.trash_dir.iterdir())
    after = settings.db_path.read_bytes() if settings.db_path.exists() else None
    assert after == before  # nothing created or published over it
    assert list_backups(settings) == backups  # the broken file was not filed as a backup


@pytest.mark.parametrize("how", ["zero-byte", "missing", "table-less"])
def test_every_writer_refuses_a_broken_database(make_settings, how) -> None:
    settings = make_settings()
    make_library(settings)
    db = VolumeDatabase(make_settings(), expected_revision=head_revision())
    break_database(settings, how)
    with pytest.raises(LibraryMissingError, match="db restore voicebox-"), db.write() as s:
        s.add(Profile(name="over the void"))


def test_refusal_is_a_503_naming_the_backup_not_bootstrap(api_client, api_services) -> None:
    r = api_client.post("/profiles", json={"name": "one", "language": "en"})
    assert r.status_code == 200
    settings = api_services.settings
    sample = settings.data_dir / "profiles" / "x" / "a.wav"
    sample.parent.mkdir(parents=True)
    sample.write_bytes(b"RIFF")
    settings.db_path.write_bytes(b"")
    r = api_client.post("/profiles", json={"name": "two", "language": "en"})
    assert r.status_code == 503
    assert "refusing to create an empty database" in r.json()["detail"]
    assert "bootstrap" not in r.json()["detail"]
    assert str(settings.volume) not in r.text


@pytest.mark.parametrize("how", ["zero-byte", "missing"])
def test_new_volume_with_no_library_still_initialises(make_settings, how) -> None:
    settings = make_settings()
    (settings.data_dir / "db").mkdir(parents=True)
    if how == "zero-byte":
        settings.db_path.write_bytes(b"")
    assert library_evidence(settings) == []
    report = bootstrap(settings)
    assert report.migration["action"] == "created"
    assert report.migration["backup"] is None  # the empty file was not backed up
    assert list_backups(settings) == []
    assert inspect_database(settings.db_path).good


def test_empty_or_unreadable_files_are_never_backups(make_settings) -> None:
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    empty = settings.volume / "empty.db"
    empty.write_bytes(b"")
    garbage = settings.volume / "garbage.db"
    garbage.write_bytes(b"not a database" * 500)
    for source in (empty, garbage, settings.volume / "absent.db"):
        with pytest.raises(BackupRefusedError):
            take_backup(settings, source, None)
    assert list_backups(settings) == []
    assert not [p for p in settings.backups_dir.iterdir()]  # no partial left either


def test_rotating_backups_appear_rotate_and_restore(make_settings, capsys) -> None:
    settings = make_settings(
        VOICEBOX_BACKUP_INTERVAL="0.2",
        VOICEBOX_BACKUPS_KEEP="2",
        VOICEBOX_BACKUPS_HOURLY="1",
        VOICEBOX_BACKUPS_DAILY="1",
    )
    bootstrap(settings, run_fsck=False)
    db = VolumeDatabase(settings, expected_revision=head_revision())
    for i in range(4):
        with db.write() as session:
            session.add(Profile(name=f"p{i}"))
        time.sleep(0.25)
    assert db.stats.backups == 4
    names = [p.name for p in list_backups(settings)]
    assert len(names) == 2  # keep 2 newest; the one hourly and daily slots are the newest too
    newest = inspect_database(settings.backups_dir / names[0])
    assert newest.good and newest.rows["profiles"] == 4

    # db restore without a name lists the set with row counts
    code, out, _ = run_cli(settings, ["db", "restore", "--json"], capsys)
    listed = json.loads(out)["backups"]
    assert code == 0 and [b["name"] for b in listed] == names
    assert [b["rows"]["profiles"] for b in listed] == [4, 3]

    # a mistaken delete, then a restore of the older backup brings its rows back
    with db.write() as session:
        for row in session.scalars(select(Profile)):
            session.delete(row)
    code, _, err = run_cli(settings, ["db", "restore", names[1]], capsys)
    assert code == 0, err
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Profile)) == 3


def test_rotation_keeps_hourly_and_daily_slots(make_settings) -> None:
    settings = make_settings(
        VOICEBOX_BACKUPS_KEEP="1", VOICEBOX_BACKUPS_HOURLY="3", VOICEBOX_BACKUPS_DAILY="2"
    )
    bootstrap(settings, run_fsck=False)
    source = settings.db_path
    now = datetime.now(UTC)
    # two backups per hour for the last 5 hours, and one a day for 4 days before that
    times = [now - timedelta(minutes=30 * i) for i in range(10)]
    times += [now - timedelta(days=d) for d in range(1, 5)]
    for t in times:
        target = settings.backups_dir / f"voicebox-x-{t.strftime(STAMP_FORMAT)}.db"
        target.write_bytes(source.read_bytes())
    rotate(settings)
    kept = {p.name for p in list_backups(settings)}
    hours = {(now - timedelta(minutes=30 * i)).strftime("%Y%m%dT%H") for i in range(10)}
    days = {t.strftime("%Y%m%d") for t in times}
    assert len(kept) <= 1 + 3 + 2
    kept_hours = {name.split("-")[-1][:11] for name in kept}
    kept_days = {name.split("-")[-1][:8] for name in kept}
    newest_hours = set(sorted(hours, reverse=True)[:3])
    assert newest_hours <= kept_hours, f"one backup per hour for the 3 newest hours: {sorted(kept)}"
    assert len(kept_days & days) >= 2


def test_fsck_never_trashes_when_the_database_cannot_judge(make_settings) -> None:
    settings = make_settings()
    files = make_library(settings)
    db = VolumeDatabase(settings, expected_revision=head_revision())
    with db.write() as session:  # rows gone, files still there: what an emptied library looks like
        for row in session.scalars(select(ProfileSample)):
            session.delete(row)
        for row in session.scalars(select(Profile)):
            session.delete(row)
    report = fsck_volume(settings, db, repair=True, bounded=True)
    assert sorted(report.orphans_held) == sorted(
        p.relative_to(settings.data_dir).as_posix() for p in files
    )
    assert report.orphans_held_reason == "the database holds no library rows"
    assert all(p.exists() for p in files) and report.orphans_trashed == []
    created = fsck_volume(settings, db, repair=True, database_created=True)
    assert created.orphans_trashed == [] and "created by this boot" in created.orphans_held_reason


def test_fsck_moves_a_bounded_share_unless_forced_and_trash_restores(make_settings, capsys) -> None:
    settings = make_settings()
    make_library(settings, samples=1)
    old = time.time() - 3 * 86400
    orphans = []
    for i in range(ORPHAN_MOVE_FLOOR + 5):
        path = settings.data_dir / "generations" / "2026-01" / f"o{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")
        os.utime(path, (old, old))
        orphans.append(path)
    db = VolumeDatabase(settings, expected_revision=head_revision())
    report = fsck_volume(settings, db, repair=True)
    assert len(report.orphans_trashed) == ORPHAN_MOVE_FLOOR
    assert len(report.orphans_held) == 5 and "--force" in report.orphans_held_reason
    assert sum(p.exists() for p in orphans) == 5
    forced = fsck_volume(settings, db, repair=True, force=True)
    assert len(forced.orphans_trashed) == 5 and not any(p.exists() for p in orphans)

    code, out, _ = run_cli(settings, ["volume", "trash", "--json"], capsys)
    entries = json.loads(out)["entries"]
    assert code == 0 and len(entries) == ORPHAN_MOVE_FLOOR + 5
    code, out, err = run_cli(settings, ["volume", "trash", "restore", "--all", "--json"], capsys)
    assert code == 0, err
    assert all(p.exists() for p in orphans) and not any(settings.trash_dir.iterdir())


def test_trash_keeps_files_for_the_retention_then_purges(make_settings) -> None:
    settings = make_settings(VOICEBOX_TRASH_DAYS="1")
    make_library(settings, samples=1)
    old = time.time() - 3 * 86400
    orphan = settings.data_dir / "generations" / "2026-01" / "old.wav"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"RIFF")
    os.utime(orphan, (old, old))
    db = VolumeDatabase(settings, expected_revision=head_revision())
    report = fsck_volume(settings, db, repair=True)
    (entry,) = report.orphans_trashed
    assert report.trash_purged == 0  # the file was 3 days old, but it entered trash just now
    aged = time.time() - 2 * 86400
    os.utime(settings.trash_dir / entry, (aged, aged))
    assert fsck_volume(settings, db, repair=True).trash_purged == 1
    assert not (settings.trash_dir / entry).exists()


def test_boot_fsck_checks_a_slice_of_rows_resuming_where_it_stopped(make_settings, monkeypatch):
    import volume_bootstrap.fsck as fsck

    monkeypatch.setattr(fsck, "BOOT_ROWS", 3)
    settings = make_settings()
    make_library(settings, samples=7)
    for path in (settings.data_dir / "profiles").rglob("*.wav"):
        path.unlink()  # every row now points at a missing file: each check reports its row
    db = VolumeDatabase(settings, expected_revision=head_revision())
    seen: list[str] = []
    for _ in range(3):
        report = fsck_volume(settings, db, repair=False, bounded=True)
        assert report.rows_checked == 3 and report.rows_total == 7 and report.truncated
        seen.extend(report.missing_files)
    assert len(set(seen)) == 7  # 3 + 3 + (1 + 2 wrapped): every row within three boots
    full = fsck_volume(settings, db, repair=False)
    assert full.rows_checked == 7 and len(full.missing_files) == 7


def test_bootstrap_line_summarises_long_lists(make_settings) -> None:
    settings = make_settings()
    make_library(settings, samples=12)
    for path in (settings.data_dir / "profiles").rglob("*.wav"):
        path.unlink()
    report = bootstrap(make_settings())
    fsck = report.as_dict()["fsck"]
    assert fsck["counts"]["missing_files"] == 12 and len(fsck["missing_files"]) == 5


def test_missing_database_on_a_new_volume_points_at_bootstrap(make_settings) -> None:
    settings = make_settings()
    db = VolumeDatabase(settings, expected_revision=head_revision())
    with pytest.raises(DatabaseError, match="run `voicebox-worker bootstrap`"):
        db.refresh()


def test_a_large_table_less_database_is_refused_too(make_settings, capsys) -> None:
    """Tables dropped without VACUUM leave a big file with no tables: still no library, still refused."""
    settings = make_settings()
    files = make_library(settings)
    settings.db_path.unlink()
    conn = sqlite3.connect(settings.db_path)
    conn.execute("CREATE TABLE filler (x)")
    conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 1000,) for _ in range(200)])
    conn.commit()
    conn.execute("DROP TABLE filler")
    conn.commit()
    conn.close()
    assert settings.db_path.stat().st_size > 64 * 1024
    code, _, err = run_cli(make_settings(), ["bootstrap"], capsys)
    assert code == 3 and "database is without tables" in err and "db restore" in err
    assert all(path.exists() for path in files)
