"""Alembic, run from code: the configuration, the revisions this code knows, and the operations on a file.

Why a module of its own below ``volume_bootstrap``: the service container asks for the head revision, the
volume's and the PostgreSQL migrators both run the same revisions, and adoption converts a legacy file in the
same kind of transaction; each of them uses these helpers, while the policy (when to create, adopt, back up,
upgrade or refuse) stays in ``volume_bootstrap/migrate.py`` and ``volume_bootstrap/migrate_pg.py``.

Why ``BEGIN IMMEDIATE``: pysqlite does not make DDL transactional, so a kill between two batch operations used
to leave a half-migrated file; with the transaction issued by SQLAlchemy, SQLite's journal rolls it back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

from backend.db.errors import DatabaseCorruptError, SchemaMismatchError

if TYPE_CHECKING:  # alembic is imported when a migration runs, not when this module loads
    from alembic.config import Config
    from alembic.script import ScriptDirectory


def migrations_dir() -> Path:
    """The folder of this package: Alembic's script location (``env.py``, ``versions/``)."""
    return Path(__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without an ``alembic.ini``; ``env.py`` runs on ``connection`` when given."""
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


def refuse_unknown(found: str | None, known: list[str], head: str) -> None:
    """Refuse a database at a revision this code does not know: a newer image migrated it."""
    if found is not None and found not in known:
        raise SchemaMismatchError(
            f"the volume database is at revision {found!r}, which this image does not know "
            f"(its newest is {head!r}); a newer image migrated it — deploy that image, "
            "this worker will not run against the new schema"
        )


@dataclass
class MigrationResult:
    """What a migration did, on the volume's SQLite or on PostgreSQL (``db upgrade``, the boot line)."""

    action: str  # created | upgraded | current | adopted
    from_revision: str | None
    to_revision: str
    backup: str | None = None
    seconds: float = 0.0
    adoption: dict[str, object] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


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
    """The tables of a SQLite file other than SQLite's own and ``alembic_version``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "AND name != 'alembic_version'"
        ).fetchall()
        return {row[0] for row in rows}
    finally:
        conn.close()
