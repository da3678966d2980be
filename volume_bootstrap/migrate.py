"""The volume database's migration policy: create, adopt, back up and upgrade — once, under the lease.

Why a work copy: the upgrade happens in a private file; only after ``integrity_check`` does the result replace
the shared database (the fence and atomic publish of ``VolumeDatabase.write_file``). The Alembic operations
themselves (configuration, revisions, the ``BEGIN IMMEDIATE`` transaction, upgrade, schema diff) are in
``migrations/runner.py``; a PostgreSQL database is handed to ``volume_bootstrap/migrate_pg.py``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from backend.config import Settings
from backend.db.backups import (
    backup_shared,
    database_state,
    library_refusal,
    restore_hint,
)
from backend.db.backups import (
    list_backups as list_backups,  # re-exported: callers find the set here
)
from backend.db.errors import DatabaseCorruptError, SchemaMismatchError
from backend.db.interface import Database
from backend.db.postgres import PostgresDatabase
from backend.db.sqlite_files import integrity_check, read_revision
from backend.db.volume_db import SHARED_NAME, VolumeDatabase, WorkCopy
from migrations.runner import (
    MigrationResult,
    head_revision,
    known_revisions,
    refuse_unknown,
    schema_differences,
    upgrade_file,
    user_tables,
)

log = logging.getLogger(__name__)


def _corrupt_message(settings: Settings, detail: str) -> str:
    return f"the shared database {SHARED_NAME} is corrupt ({detail}); {restore_hint(settings)}"


def migrate_volume(
    settings: Settings,
    db: Database,
    *,
    target: str = "head",
    adopt_legacy: bool = True,
    backed_up: bool = False,
) -> MigrationResult:
    """Bring the database to ``target``: create, adopt, or back up and upgrade — once, under the lease.

    On PostgreSQL (``VOICEBOX_DATABASE_URL``) the same revisions run under an advisory lock instead
    (``volume_bootstrap.migrate_pg``); ``backed_up`` says the operator took a ``pg_dump`` already.
    """
    started = time.monotonic()
    head = head_revision() if target == "head" else target
    known = known_revisions()
    if isinstance(db, PostgresDatabase):
        from volume_bootstrap.migrate_pg import migrate_postgres

        return migrate_postgres(settings, db, target=head, known=known, backed_up=backed_up)
    assert isinstance(db, VolumeDatabase)
    _refuse_missing_library(settings)

    # Fast path without the lease: most cold starts find the database already at head.
    if settings.db_path.exists():
        db.refresh(force=True)
        _check_integrity(settings, db.local_path)
        if db.local_revision == head:
            return MigrationResult("current", head, head, seconds=time.monotonic() - started)
        refuse_unknown(db.local_revision, known, head)

    result: MigrationResult | None = None
    with db.write_file(check_schema=False) as work:
        result = _migrate_work_copy(settings, work, head, known, adopt_legacy)
    assert result is not None
    result.seconds = time.monotonic() - started
    log.info("database %s: %s -> %s", result.action, result.from_revision, result.to_revision)
    return result


def _refuse_missing_library(settings: Settings, state: str | None = None) -> None:
    """A missing, empty or table-less database on a volume that holds a library is a fault, not a new volume.

    Creating one would publish an empty library and let fsck trash the real files as orphans. ``state`` is
    the database's state when the caller already knows it (else the shared file's, cheaply).
    """
    state = state or database_state(settings.db_path)
    if state is not None:
        refusal = library_refusal(settings, state)
        if refusal is not None:
            raise refusal


def _check_integrity(settings: Settings, path: Path) -> None:
    verdict = integrity_check(path)
    if verdict != "ok":
        raise DatabaseCorruptError(_corrupt_message(settings, verdict))


def _migrate_work_copy(
    settings: Settings, work: WorkCopy, head: str, known: list[str], adopt_legacy: bool
) -> MigrationResult:
    # again under the lease, on the pulled copy (any size): the file may have changed meanwhile
    state = database_state(work.path, max_bytes=None) if work.path.exists() else "missing"
    if state is not None:
        _refuse_missing_library(settings, state)
    exists = state is None
    if exists:
        _check_integrity(settings, work.path)
    found = read_revision(work.path) if exists else None
    if exists and found == head:
        work.publish = False  # a peer migrated while we waited for the lease
        return MigrationResult("current", found, head)
    refuse_unknown(found, known, head)
    if found is not None and known.index(found) > known.index(head):
        work.publish = False
        raise SchemaMismatchError(
            f"refusing to downgrade automatically from {found!r} to {head!r}; "
            "use `voicebox-worker db downgrade` or restore a backup"
        )

    backup = str(backup_shared(settings, found).name) if exists else None
    adoption = None
    action = "upgraded" if exists else "created"
    if exists and found is None and user_tables(work.path):
        if not adopt_legacy:
            raise SchemaMismatchError("the database has tables but no revision; adopt it first")
        from volume_bootstrap.adopt import adopt_database_file

        adoption = adopt_database_file(settings, work.path)
        action = "adopted"
    upgrade_file(work.path, head)
    _check_integrity(settings, work.path)
    if adoption is not None:
        diffs = schema_differences(work.path)
        if diffs:
            raise SchemaMismatchError(
                f"the adopted database does not match this schema: {diffs[:5]}"
            )
    if read_revision(work.path) != head:
        raise DatabaseCorruptError(f"upgrade did not reach {head!r}")
    return MigrationResult(action, found, head, backup=backup, adoption=adoption)
