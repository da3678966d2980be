"""The write unit on the local copy (one copy per write onto the volume): what it must never do.

A unit now commits on the worker's local copy and publishes that file. So: a change whose fence or publish
failed must not stay readable on this worker; a read inside a unit must not wait for the unit; a rollback
journal left by a unit killed mid-transaction must not be played back into a freshly pulled copy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.db.errors import VolumeFullError, WriteConflictError
from backend.db.models import Profile
from backend.db.sqlite_files import integrity_check
from backend.db.volume_db import VolumeDatabase
from migrations.runner import head_revision
from volume_bootstrap.bootstrap import bootstrap


@pytest.fixture
def db(make_settings) -> VolumeDatabase:  # type: ignore[no-untyped-def]
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    return VolumeDatabase(settings, expected_revision=head_revision())


def names(db: VolumeDatabase) -> set[str]:
    with db.read() as session:
        return set(session.scalars(select(Profile.name)))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_published_unit_leaves_local_and_shared_identical(db: VolumeDatabase) -> None:
    with db.write() as session:
        session.add(Profile(name="one"))
    assert sha(db.local_path) == sha(db.shared_path)
    assert db.stats.publishes == 1 and names(db) == {"one"}


@pytest.mark.parametrize("fault", ["fence", "volume full"])
def test_a_unit_that_did_not_publish_is_not_readable_afterwards(
    db: VolumeDatabase, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    with db.write() as session:
        session.add(Profile(name="kept"))
    shared_before = sha(db.shared_path)

    def fail(*_args: object, **_kw: object) -> None:
        if fault == "fence":
            raise WriteConflictError("write not published: a peer published; retry")
        raise VolumeFullError("the volume is full")

    monkeypatch.setattr(db, "_fence" if fault == "fence" else "_publish", fail)
    with pytest.raises((WriteConflictError, VolumeFullError)), db.write() as session:
        session.add(Profile(name="never published"))
    monkeypatch.undo()
    assert sha(db.shared_path) == shared_before
    assert names(db) == {"kept"}  # the local copy was pulled again
    assert integrity_check(db.local_path) == "ok"


def test_a_read_inside_a_unit_does_not_wait_for_it(db: VolumeDatabase) -> None:
    with db.write() as session:
        session.add(Profile(name="outer"))
        with db.read() as inner:  # would deadlock on the exclusive lock without reentrancy
            assert inner.scalar(select(func.count()).select_from(Profile)) == 0
    assert names(db) == {"outer"}


def test_a_stale_rollback_journal_is_not_played_into_a_fresh_copy(make_settings) -> None:  # type: ignore[no-untyped-def]
    first = make_settings()
    bootstrap(first, run_fsck=False)
    writer = VolumeDatabase(first, expected_revision=head_revision())
    with writer.write() as session:
        session.add(Profile(name="published"))
    reader_settings = make_settings()
    reader = VolumeDatabase(reader_settings, expected_revision=head_revision())
    reader.local_dir.mkdir(parents=True, exist_ok=True)
    # what a worker killed mid-unit leaves in its local folder: a copy and its hot journal (garbage here)
    reader.local_path.write_bytes(writer.shared_path.read_bytes())
    Path(f"{reader.local_path}-journal").write_bytes(b"\x00" * 512 + b"garbage journal" * 100)
    assert names(reader) == {"published"}
    assert not Path(f"{reader.local_path}-journal").exists()
    assert integrity_check(reader.local_path) == "ok"
