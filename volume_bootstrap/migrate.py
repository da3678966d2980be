"""Alembic, run from code, on a work copy of the volume database under the lease.

Why a work copy: the upgrade happens in a private file; only after ``integrity_check`` does the result replace
the shared database (the fence and atomic publish of ``VolumeDatabase.write_file``). Why ``BEGIN IMMEDIATE``:
pysqlite does not make DDL transactional, so a kill between two batch operations used to leave a half-migrated
file; with the transaction issued by SQLAlchemy, SQLite's journal rolls it back.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

from backend.config import Settings
from backend.db.backups import (
    database_state,
    library_refusal,
    rotate,
    take_backup,
)
from backend.db.backups import (
    list_backups as list_backups,  # re-exported: callers find the set here
)
from backend.db.errors import DatabaseCorruptError, SchemaMismatchError
from backend.db.interface import Database
from backend.db.postgres import PostgresDatabase
from backend.db.volume_db import (
    SHARED_NAME,
    VolumeDatabase,
    WorkCopy,
    integrity_check,
    read_revision,
    restore_hint,
)

if TYPE_CHECKING:  # alembic is imported when a migration runs, not when this module loads
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)


def migrations_dir() -> Path:
    import migrations

    return Path(migrations.__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = script_directory().get_current_head()
    assert head is not None
    return head


def known_revisions() -> list[str]:
    """Revisions of this code, oldest first."""
    return [rev.revision for rev in reversed(list(script_directory().walk_revisions()))]


def migration_engine(path: Path) -> Engine:
    """An engine whose transactions are ``BEGIN IMMEDIATE`` and include DDL; FKs off while tables move."""
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = (
            None  # SQLAlchemy, not pysqlite, decides where transactions start
        )
        dbapi_conn.execute("PRAGMA foreign_keys=OFF")
        dbapi_conn.execute("PRAGMA journal_mode=DELETE")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def migration_transaction(path: Path) -> Iterator[Connection]:
    """One ``BEGIN IMMEDIATE`` transaction on ``path``: committed on a clean exit, rolled back otherwise."""
    engine = migration_engine(path)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def upgrade_file(path: Path, target: str = "head") -> None:
    from alembic import command

    with migration_transaction(path) as conn:
        command.upgrade(alembic_config(conn), target)
        problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise DatabaseCorruptError(f"foreign key check failed after upgrade: {problems[:5]}")


def downgrade_file(path: Path, target: str) -> None:
    from alembic import command

    with migration_transaction(path) as conn:
        command.downgrade(alembic_config(conn), target)


def stamp_file(path: Path, revision: str) -> None:
    from alembic import command

    with migration_transaction(path) as conn:
        command.stamp(alembic_config(conn), revision)


def schema_differences(path: Path) -> list[object]:
    """What differs between a database file and this code's models (empty when they match)."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return compare_schema(conn)
    finally:
        engine.dispose()


def search_index_object(obj: object, name: str | None, type_: str, *_rest: object) -> bool:
    """False for the search indexes of ``0005_history_fts``: they live outside the models on purpose."""
    if type_ == "table" and (name or "").startswith("generations_fts"):
        return False
    return not (type_ == "index" and (name or "").endswith("_trgm"))


def compare_schema(conn: Connection) -> list[object]:
    """What differs between the database behind ``conn`` (SQLite or PostgreSQL) and the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from backend.db.models import Base

    context = MigrationContext.configure(conn, opts={"include_object": search_index_object})
    return list(compare_metadata(context, Base.metadata))


def user_tables(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "AND name != 'alembic_version'"
        ).fetchall()
        return {row[0] for row in rows}
    finally:
        conn.close()


@dataclass
class MigrationResult:
    action: str  # created | upgraded | current | adopted
    from_revision: str | None
    to_revision: str
    backup: str | None = None
    seconds: float = 0.0
    adoption: dict[str, object] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def backup_shared(settings: Settings, revision: str | None) -> Path:
    """Copy the (immutable, only ever replaced) shared file into the verified backup set, then rotate.

    Raises ``BackupRefusedError`` for an empty or unreadable file: that is never filed as a backup.
    """
    return settings.backups_dir / take_backup(settings, settings.db_path, revision).name


def prune_backups(settings: Settings) -> None:
    rotate(settings)


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


def refuse_unknown(found: str | None, known: list[str], head: str) -> None:
    if found is not None and found not in known:
        raise SchemaMismatchError(
            f"the volume database is at revision {found!r}, which this image does not know "
            f"(its newest is {head!r}); a newer image migrated it — deploy that image, "
            "this worker will not run against the new schema"
        )


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
