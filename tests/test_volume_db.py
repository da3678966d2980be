"""The leased snapshot swap, in one process: reads, writes, fencing, schema refusal."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.db.errors import SchemaMismatchError, WriteConflictError
from backend.db.lease import WriteLease
from backend.db.models import Profile
from backend.db.sqlite_files import integrity_check
from backend.db.volume_db import VolumeDatabase
from migrations.runner import head_revision
from volume_bootstrap.bootstrap import bootstrap


@pytest.fixture
def two_workers(make_settings):
    first, second = make_settings(), make_settings()
    bootstrap(first, run_fsck=False)
    head = head_revision()
    return VolumeDatabase(first, expected_revision=head), VolumeDatabase(
        second, expected_revision=head
    )


def count(db: VolumeDatabase) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Profile))


def test_write_is_published_and_seen_by_a_peer(two_workers) -> None:
    a, b = two_workers
    with a.write() as session:
        session.add(Profile(name="alice"))
    assert count(a) == 1  # reads its own write
    assert count(b) == 1  # the peer pulls the new shared file
    with b.write() as session:
        session.add(Profile(name="bob"))
    assert count(a) == 2
    assert integrity_check(a.settings.db_path) == "ok"


def test_shared_file_is_never_opened_by_sqlite(two_workers) -> None:
    a, _ = two_workers
    with a.write() as session:
        session.add(Profile(name="x"))
    db_dir = a.settings.db_dir
    leftovers = [p.name for p in db_dir.iterdir() if p.name.endswith(("-journal", "-wal", "-shm"))]
    assert leftovers == []


def test_failed_unit_of_work_publishes_nothing(two_workers) -> None:
    a, b = two_workers
    before = os.stat(a.settings.db_path).st_ino
    with pytest.raises(RuntimeError), a.write() as session:
        session.add(Profile(name="ghost"))
        session.flush()
        raise RuntimeError("boom")
    assert os.stat(a.settings.db_path).st_ino == before
    assert count(b) == 0


def test_no_change_means_no_publish(two_workers) -> None:
    a, _ = two_workers
    before = os.stat(a.settings.db_path)
    with a.write() as session:
        session.scalar(select(func.count()).select_from(Profile))
    after = os.stat(a.settings.db_path)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_fence_refuses_when_shared_file_changed_under_us(two_workers, monkeypatch) -> None:
    a, b = two_workers
    # Simulate a lost lease: a peer publishes while `a` is inside its unit of work.
    with pytest.raises(WriteConflictError, match="changed since it was pulled"), a.write() as s:
        s.add(Profile(name="late"))
        monkeypatch.setattr(b, "lease", _no_lease)  # the peer does not see a's lease (broken locks)
        with b.write() as other:
            other.add(Profile(name="winner"))
    with b.read() as session:
        names = set(session.scalars(select(Profile.name)))
    assert names == {"winner"}


def test_fence_refuses_when_lease_compromised(two_workers) -> None:
    a, _ = two_workers
    with pytest.raises(WriteConflictError, match="took the lease over"), a.write() as session:
        session.add(Profile(name="paused"))
        # what the heartbeat reports after a takeover
        a.lease_path.write_text("someone else's marker")
    assert count(a) == 0


def test_refuses_a_database_from_a_newer_image(two_workers) -> None:
    a, b = two_workers
    conn = sqlite3.connect(a.settings.db_path)
    conn.execute("UPDATE alembic_version SET version_num='9999_future'")
    conn.commit()
    conn.close()
    expected = "9999_future.*" + head_revision()
    with pytest.raises(SchemaMismatchError, match=expected), b.write() as session:
        session.add(Profile(name="nope"))


class _AlwaysHeld:
    """A lease that never notices a takeover (a ``WriteLease`` of its own, not ours subclassed)."""

    def lost_reason(self, lease_path: Path) -> str | None:
        return None


class _NoLease:
    """A peer whose lock does not see ours (client-local locks): it always thinks it holds the lease."""

    def __enter__(self) -> WriteLease:
        return _AlwaysHeld()

    def __exit__(self, *exc):
        return False


def _no_lease():
    return _NoLease()


def test_abandoned_empty_marker_is_broken_after_the_lease(two_workers) -> None:
    """A worker killed between the marker's exclusive create and its owner record must not wedge writers."""
    import time

    a, _ = two_workers
    a.lease_path.write_bytes(b"")
    old = time.time() - a.settings.lease_seconds - 1
    os.utime(a.lease_path, (old, old))
    started = time.monotonic()
    with a.write() as session:
        session.add(Profile(name="after-abandoned-marker"))
    assert time.monotonic() - started < a.settings.lease_seconds * 3
    assert count(a) == 1


def test_fresh_empty_marker_is_left_alone(two_workers) -> None:
    from backend.db.lease_recovery import StaleMarkerBreaker

    a, _ = two_workers
    a.lease_path.write_bytes(b"")
    breaker = StaleMarkerBreaker(a.lease_path, a.settings.lease_seconds)
    assert breaker.poll() is None  # a peer may be writing its record right now
    assert a.lease_path.exists()


def test_unix_none_vfs_really_turns_sqlite_locks_off(tmp_path) -> None:
    """The volume-sim's unix-none mode must change SQLite's locking, or it proves nothing."""
    from backend.db.sqlite_files import sqlite_engine

    path = tmp_path / "locks.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()

    def second_writer_gets_in(vfs):  # type: ignore[no-untyped-def]
        first = sqlite_engine(path, vfs).raw_connection()
        second = sqlite_engine(path, vfs).raw_connection()
        first.driver_connection.isolation_level = None
        second.driver_connection.isolation_level = None
        second.driver_connection.execute("PRAGMA busy_timeout=0")
        first.driver_connection.execute("BEGIN EXCLUSIVE")
        try:
            second.driver_connection.execute("BEGIN EXCLUSIVE")
            second.driver_connection.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            first.driver_connection.execute("ROLLBACK")
            first.close()
            second.close()

    assert second_writer_gets_in(None) is False
    assert second_writer_gets_in("unix-none") is True


def test_abandoned_marker_is_broken_by_its_age_without_waiting_a_lease(make_settings) -> None:
    """A marker with no owner record already older than the lease is broken at once, not after one more
    lease period of waiting (30 s per writer with the default lease)."""
    import time

    settings = make_settings(VOICEBOX_LEASE_SECONDS="6")
    bootstrap(settings, run_fsck=False)
    db = VolumeDatabase(settings, expected_revision=head_revision())
    db.lease_path.write_bytes(b"")
    old = time.time() - 3600
    os.utime(db.lease_path, (old, old))
    started = time.monotonic()
    with db.write() as session:
        session.add(Profile(name="no-wait"))
    assert time.monotonic() - started < 3.0  # the old code waited the full 6 s lease first
    assert count(db) == 1
