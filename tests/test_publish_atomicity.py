"""Publishing is atomic and durable in the right order: a reader hammering the shared file while a writer
publishes never sees a torn database, and the temp file is fsynced before the rename, the folder after it."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

import backend.db.volume_db as volume_db
import backend.storage.atomic as atomic
from backend.db.models import Profile
from backend.db.volume_db import VolumeDatabase
from migrations.runner import head_revision
from volume_bootstrap.bootstrap import bootstrap

PUBLISHES = 40


def torn(data: bytes) -> str | None:
    """Why ``data`` is not one whole SQLite database, or None when it is."""
    if len(data) < 100:
        return f"{len(data)} bytes"
    page_size = int.from_bytes(data[16:18], "big") or 65536
    pages = int.from_bytes(data[28:32], "big")
    if len(data) != page_size * pages:
        return f"{len(data)} bytes for {pages} pages of {page_size}"
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(data)
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
        conn.execute("SELECT count(*) FROM profiles").fetchone()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        conn.close()
    return None if verdict == "ok" else verdict


def test_reader_hammering_pulls_never_sees_a_torn_file(make_settings) -> None:
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    db = VolumeDatabase(settings, expected_revision=head_revision())
    with db.write() as session:  # a database of a few hundred pages, so a publish takes a while
        for i in range(300):
            session.add(Profile(name=f"seed-{i}", description="x" * 4000))
    stop = threading.Event()
    reads, problems = [0], []

    def reader() -> None:
        while not stop.is_set():
            with open(settings.db_path, "rb") as handle:  # what a peer's pull reads
                data = handle.read()
            reads[0] += 1
            problem = torn(data)
            if problem:
                problems.append(problem)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(PUBLISHES):
            with db.write() as session:
                session.add(Profile(name=f"p-{i}", description="y" * 4000))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert db.stats.publishes >= PUBLISHES
    assert reads[0] > PUBLISHES  # the readers really overlapped the publishes
    assert problems == [], f"{len(problems)} torn reads of {reads[0]}: {problems[:3]}"


def test_temp_file_is_fsynced_before_the_rename_and_the_folder_after(make_settings, monkeypatch):
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    db = VolumeDatabase(settings, expected_revision=head_revision())
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_fsync_dir = os.fsync, os.replace, atomic.fsync_dir

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:  # type: ignore[no-untyped-def]
        events.append(("replace", f"{src} -> {dst}"))
        real_replace(src, dst)

    def fsync_dir(path: Path) -> None:
        events.append(("fsync_dir", str(path)))
        real_fsync_dir(path)

    monkeypatch.setattr(volume_db.os, "fsync", fsync)
    monkeypatch.setattr(volume_db.os, "replace", replace)
    monkeypatch.setattr(atomic, "fsync_dir", fsync_dir)  # the one durable-write path publishes
    with db.write() as session:
        session.add(Profile(name="ordered"))
    shared = str(settings.db_path)
    (publish,) = [i for i, e in enumerate(events) if e[0] == "replace" and e[1].endswith(shared)]
    tmp = events[publish][1].split(" -> ")[0]
    synced = [i for i, e in enumerate(events) if e == ("fsync", tmp)]
    assert synced and synced[0] < publish, events  # the new content is durable before it is visible
    assert ("fsync_dir", str(settings.db_dir)) in events[publish + 1 :], (
        events
    )  # and the rename after


@pytest.mark.parametrize("kind", ["blob", "backup"])
def test_files_and_backups_fsync_before_rename(make_settings, monkeypatch, kind) -> None:
    import backend.db.backups as backups
    import backend.storage.blobs as blobs_mod
    from backend.storage.blobs import BlobStore

    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync " + os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def replace(src, dst) -> None:  # type: ignore[no-untyped-def]
        events.append(f"replace {src}")
        real_replace(src, dst)

    assert blobs_mod.os is backups.os is os  # one os module: patching it observes both
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    if kind == "blob":
        BlobStore(settings).write_bytes("generations/x/a.wav", b"RIFF" * 10)
    else:
        db = VolumeDatabase(settings, expected_revision=head_revision())
        with db.write() as session:
            session.add(Profile(name="backed up"))  # the first write with rows takes a backup
        assert db.stats.backups == 1
    folder = settings.tmp_dir if kind == "blob" else settings.backups_dir
    (moved,) = [e for e in events if e.startswith(f"replace {folder}/")]
    src = moved.split(" ", 1)[1]
    assert events.index(f"fsync {src}") < events.index(moved), events
