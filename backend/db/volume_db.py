"""The SQLite database on a shared network volume: the "leased snapshot swap".

Why this shape (``docs/architecture.md``, "The database on a shared volume"): on a FUSE network volume SQLite's own locks and
page cache cannot be trusted across workers — measured, that lost committed rows silently. So SQLite never opens
the shared file. Each worker keeps a local copy and reads from it; a write takes a cross-worker lease, pulls the
shared file if it changed, runs the transaction on a private work copy, checks the fence (lease still ours, shared
file unchanged since the pull) and publishes by replacing the shared file whole. The filesystem only has to give
atomic rename and exclusive create. A SIGKILL at any instant leaves the old file or the new one.

This module is the swap itself; what works on one file lives in ``backend.db.sqlite_files``, the lease in
``backend.db.lease``, the lock on the local copy in ``backend.db.rw_lock``.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from backend.config import Settings
from backend.db.backups import database_state, library_refusal, restore_hint
from backend.db.errors import (
    DatabaseCorruptError,
    DatabaseError,
    SchemaMismatchError,
    VolumeError,
    VolumeFullError,
    WriteConflictError,
    volume_fault,
)
from backend.db.interface import DatabaseKind
from backend.db.lease import WriteLease, acquire_write_lease
from backend.db.rw_lock import ReadWriteLock
from backend.db.sqlite_files import (
    HEADER_BYTES,
    VersionKey,
    backup_stamped,
    header_key,
    open_published,
    read_revision,
    sqlite_engine,
    version_key,
)
from backend.storage.atomic import publish  # the one durable-write path

log = logging.getLogger(__name__)

SHARED_NAME = (
    "voicebox/db/voicebox.db"  # how answers name the shared file: never the server's absolute path
)


@dataclass
class WorkCopy:
    """A private copy of the database being changed under the lease; ``publish=False`` discards it."""

    path: Path
    base_revision: str | None
    publish: bool = True
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class DatabaseStats:
    pulls: int = 0
    publishes: int = 0
    writes: int = 0
    fence_failures: int = 0
    backups: int = 0


class VolumeDatabase:
    """Reads from a local copy, writes under a lease with fencing, publishes by atomic replace.

    The default ``Database`` (``backend.db.interface``); ``PostgresDatabase`` is the other one.

    ``expected_revision`` is the Alembic head of this code: a write refuses a database at any other revision,
    so an older image never writes a schema it does not know (and a newer one waits for the migration).
    """

    kind = DatabaseKind.SQLITE_VOLUME
    conflict_retries = 2

    def __init__(
        self,
        settings: Settings,
        *,
        expected_revision: str | None = None,
        before_publish: Callable[[WorkCopy], None] | None = None,
    ) -> None:
        self.settings = settings
        self.shared_path = settings.db_path
        self.lease_path = settings.lease_path
        self.local_dir = settings.local_dir
        self.local_path = self.local_dir / "voicebox.db"
        self.expected_revision = expected_revision
        self.before_publish = before_publish
        self.stats = DatabaseStats()
        self._pulled: VersionKey | None = None
        self._local_revision: str | None = None
        self._last_check = 0.0
        self._next_backup_check = 0.0
        #: (monotonic time, "volume full" | "volume read-only") of the last write that hit one: for /health
        self.last_volume_fault: tuple[float, str] | None = None
        self._rw = ReadWriteLock()
        self._write_mutex = threading.Lock()
        self._refresh_mutex = threading.Lock()
        self._engine: Engine | None = None

    # ---------------------------------------------------------------- reads
    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session on the local copy, refreshed first when the shared file has changed."""
        self.refresh()
        with self._rw.shared():
            session = Session(self._local_engine(), expire_on_commit=False)
            try:
                yield session
            finally:
                session.close()  # ends the transaction; loaded rows stay readable (detached, not expired)

    def refresh(self, *, force: bool = False) -> bool:
        """Pull the shared file if it changed since the last pull; at most every ``db_refresh_seconds``."""
        now = time.monotonic()
        if not force and self._pulled and now - self._last_check < self.settings.db_refresh_seconds:
            return False
        with self._refresh_mutex:
            self._last_check = now
            current = version_key(self.shared_path)
            if current is None:
                raise self._missing_database("missing")
            if current == self._pulled and self.local_path.exists():
                return False
            self._pull()
            return True

    def _pull(self) -> None:
        self.local_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.local_dir / f"pull-{uuid.uuid4().hex}.db"
        try:
            # An open descriptor pins one inode: the copy is one published version even if a peer replaces it.
            with open_published(self.shared_path) as src, open(tmp, "wb") as dst:
                header = src.read(HEADER_BYTES)
                key = header_key(header)
                dst.write(header)
                shutil.copyfileobj(src, dst, 1024 * 1024)
            try:
                revision = read_revision(tmp)
            except sqlite3.DatabaseError as exc:
                raise DatabaseCorruptError(
                    f"the shared database {SHARED_NAME} is not a readable SQLite file ({exc}); "
                    + restore_hint(self.settings)
                ) from exc
            with self._rw.exclusive():
                # a unit killed mid-transaction on the local copy leaves its rollback journal: SQLite would
                # play it back into the fresh copy
                Path(f"{self.local_path}-journal").unlink(missing_ok=True)
                os.replace(tmp, self.local_path)
                self._pulled = key
                self._local_revision = revision
            self.stats.pulls += 1
        finally:
            tmp.unlink(missing_ok=True)

    def _missing_database(self, state: str) -> DatabaseError:
        """A refusal naming the newest backup when the volume holds a library, else the bootstrap hint."""
        refusal = library_refusal(self.settings, state)
        if refusal is not None:
            return refusal
        return DatabaseError(
            f"the volume database is {state}: run `voicebox-worker bootstrap` first"
        )

    def _local_engine(self) -> Engine:
        if self._engine is None:
            self._engine = sqlite_engine(self.local_path, self.settings.sqlite_vfs)
        return self._engine

    @property
    def local_revision(self) -> str | None:
        return self._local_revision

    def current_revision(self) -> str | None:
        """The revision of the shared file (pulled first when it changed)."""
        self.refresh()
        return self._local_revision

    def describe(self) -> str:
        return SHARED_NAME

    # ---------------------------------------------------------------- writes
    @contextmanager
    def write(self) -> Iterator[Session]:
        """One unit of work: commit, fence and publish on a clean exit; nothing published if it raises.

        The unit runs on the local copy itself and the publish is its one copy onto the volume (the cycle
        used to copy the file twice: local → work copy, work copy → volume). While the unit runs, this
        worker's readers wait (they never see a change that is not published): when the fence or the publish
        fails after the commit, the local copy is pulled again from the shared file before they go on.
        """
        if not self.shared_path.exists():
            with self._write_on_work_copy() as session:
                yield session
            return
        with self._write_mutex, self.lease() as held:
            self.refresh(force=True)
            base = self._pulled
            self._check_schema()
            with self._rw.exclusive():
                session = Session(self._local_engine(), expire_on_commit=False)
                try:
                    yield session
                    session.flush()
                    raw = session.connection().connection.driver_connection
                    changed = raw is not None and raw.total_changes > 0
                    if (
                        changed
                    ):  # the version stamp peers detect a publish by, inside the same commit
                        session.execute(text(f"PRAGMA user_version={secrets.randbits(31) or 1}"))
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
                finally:
                    session.close()
                if changed:
                    self._publish_local(held, base)
        self.stats.writes += 1

    def _publish_local(self, held: WriteLease, base: VersionKey | None) -> None:
        """Fence, then the committed local copy onto the volume; on any failure the local copy is pulled
        again (the shared file is unchanged, so this worker must not keep reading the unpublished change)."""
        try:
            if self.before_publish is not None:
                self.before_publish(WorkCopy(self.local_path, self._local_revision))
            self._fence(held, base)
            self._pulled = self._publish(self.local_path, stamped=True)
        except BaseException:
            self._resync_local()
            raise
        self._local_revision = read_revision(self.local_path)
        self.stats.publishes += 1
        self._rotating_backup()

    def _resync_local(self) -> None:
        self._pulled = None
        try:
            self._pull()
        except Exception:  # noqa: BLE001 - the next read pulls again; never keep the unpublished copy
            self.local_path.unlink(missing_ok=True)
            log.warning(
                "could not pull the shared database again after a failed publish", exc_info=True
            )

    @contextmanager
    def _write_on_work_copy(self) -> Iterator[Session]:
        """The unit on a private work copy (no shared file yet: the lease-held cycle decides what happens)."""
        with self.write_file() as work:
            engine = sqlite_engine(work.path, self.settings.sqlite_vfs)
            session = Session(engine, expire_on_commit=False)
            try:
                yield session
                session.flush()
                raw = session.connection().connection.driver_connection
                changed = raw is not None and raw.total_changes > 0
                session.commit()
                work.publish = changed
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
                engine.dispose()
        self.stats.writes += 1

    @contextmanager
    def write_file(self, *, check_schema: bool = True, pull: bool = True) -> Iterator[WorkCopy]:
        """The lease-held cycle on a file level: used by ``write`` and by migrations and restores.

        ``pull=False`` starts from an empty work path without reading the shared file (a restore replaces a
        file that may be unreadable); the fence still checks that nobody published meanwhile.
        """
        with self._write_mutex, self.lease() as held:
            if not pull:
                self._pulled = version_key(self.shared_path)
            elif self.shared_path.exists():
                self.refresh(force=True)
            elif check_schema and self.expected_revision is not None:
                raise self._missing_database("missing")
            else:
                self._pulled = None
            base = self._pulled
            if check_schema:
                self._check_schema()
            self.local_dir.mkdir(parents=True, exist_ok=True)
            work = WorkCopy(
                path=self.local_dir / f"work-{uuid.uuid4().hex}.db",
                base_revision=self._local_revision if base and pull else None,
            )
            try:
                if base is not None and pull:
                    with self._rw.shared():
                        shutil.copyfile(self.local_path, work.path)
                yield work
                if not work.publish:
                    return
                if self.before_publish is not None:
                    self.before_publish(work)
                self._fence(held, base)
                published = self._publish(work.path)
                with self._rw.exclusive():
                    os.replace(work.path, self.local_path)
                    self._pulled = published
                    self._local_revision = read_revision(self.local_path)
                self.stats.publishes += 1
                self._rotating_backup()
            finally:
                work.path.unlink(missing_ok=True)
                Path(f"{work.path}-journal").unlink(missing_ok=True)

    def _rotating_backup(self) -> None:
        """After a publish, still under the lease: copy the database into the backup set when one is due.

        Checked against the backup folder at most once per interval (the answer is remembered), skipped for a
        database with no library rows, and never allowed to fail the write that was already published.
        """
        if self.settings.backup_interval_seconds <= 0 or time.monotonic() < self._next_backup_check:
            return
        from backend.db.backups import backup_due, inspect_database, take_backup

        try:
            wait = backup_due(self.settings)
            if wait is None or wait > 0:
                self._next_backup_check = time.monotonic() + (wait or 0.0)
                return
            if inspect_database(self.local_path).library_rows == 0:
                return  # nothing to protect yet; ask again after the next publish
            info = take_backup(self.settings, self.local_path, self._local_revision)
            self.stats.backups += 1
            self._next_backup_check = time.monotonic() + self.settings.backup_interval_seconds
            log.info("rotating backup %s (%d rows)", info.name, info.facts.library_rows)
        except Exception:  # noqa: BLE001 - the publish is durable; a backup failure is only logged
            self._next_backup_check = time.monotonic() + 60.0
            log.warning("rotating backup failed", exc_info=True)

    def _check_schema(self) -> None:
        if self.expected_revision is None or self._pulled is None:
            return
        found = self._local_revision
        if found is None and self.expected_revision is not None:
            state = database_state(self.local_path, max_bytes=None)
            if state is not None:
                raise self._missing_database(state)
        if found != self.expected_revision:
            raise SchemaMismatchError(
                f"the volume database is at revision {found!r} but this worker's code expects "
                f"{self.expected_revision!r}; "
                + (
                    "it was migrated by a newer image — this worker will not write to it"
                    if found is not None
                    else "it has no revision — run `voicebox-worker bootstrap`"
                )
            )

    # ---------------------------------------------------------------- lease + fence + publish
    @contextmanager
    def lease(self) -> Iterator[WriteLease]:
        """Hold the volume-wide write lease; a killed holder is taken over after ``lease_seconds``."""
        try:
            held = acquire_write_lease(
                self.lease_path, self.settings.lease_seconds, self.settings.lease_timeout
            )
        except OSError as exc:
            fault = self._volume_fault(exc)
            if fault is None:
                raise
            raise fault from exc
        try:
            yield held
        finally:
            held.release()

    def _fence(self, held: WriteLease, base: VersionKey | None) -> None:
        reason = held.lost_reason(self.lease_path)
        if reason is None and version_key(self.shared_path) != base:
            reason = "the shared database changed since it was pulled"
        if reason is not None:
            self.stats.fence_failures += 1
            raise WriteConflictError(f"write not published: {reason}; retry the request")

    def _publish(self, work_path: Path, *, stamped: bool = False) -> VersionKey:
        """Copy into a temp file beside the shared one, then ``storage.atomic.publish``: fsync → os.replace →
        fsync(dir).

        ``stamped``: ``work_path`` is a committed, closed file already carrying a fresh version stamp (the
        local copy after a unit): one sequential file copy. Otherwise (migrations, restores) the SQLite backup
        API copies it and the stamp is set on the copy.

        A full or read-only volume is reported as such (``VolumeFullError``/``VolumeReadOnlyError``): the temp
        file is removed and the shared file is untouched, so nothing partial is ever visible.
        """
        try:
            return self._publish_file(work_path, stamped=stamped)
        except (OSError, sqlite3.Error) as exc:
            fault = self._volume_fault(exc)
            if fault is None:
                raise
            raise fault from exc

    def _volume_fault(self, exc: BaseException) -> VolumeError | None:
        """The volume fault behind ``exc`` (remembered for ``/health``), or None for anything else."""
        fault = volume_fault(exc)
        if fault is None:
            return None
        kind = "volume full" if isinstance(fault, VolumeFullError) else "volume read-only"
        self.last_volume_fault = (time.monotonic(), kind)
        return fault

    def _publish_file(self, work_path: Path, *, stamped: bool = False) -> VersionKey:
        db_dir = self.shared_path.parent
        tmp = db_dir / f"{self.shared_path.name}.tmp-{uuid.uuid4().hex}"
        try:
            if stamped:
                shutil.copyfile(work_path, tmp)
            else:
                backup_stamped(work_path, tmp)
            published = version_key(tmp)
            publish(tmp, self.shared_path)
            assert published is not None
            return published
        finally:
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def scalar(self, sql: str) -> object:
        """A one-value read, for health and status answers."""
        with self.read() as session:
            return session.execute(text(sql)).scalar()
