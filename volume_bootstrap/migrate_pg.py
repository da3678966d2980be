"""Alembic on a PostgreSQL database: one migrator at a time, the same revisions as on the volume's SQLite.

Why ``pg_advisory_lock``: many workers cold-start at once after a deploy; the first takes the lock and
upgrades inside one transaction (PostgreSQL's DDL is transactional, so a kill rolls it all back), the others wait
on the lock and then find the database at head. The same refusals hold as on the volume: a database at a
revision this image does not know (a newer image migrated it) is never touched, and an upgrade of a database
that holds a library needs a backup first — ``pg_dump`` into ``db/backups`` on the volume when the binary is on
PATH, else the migration refuses, names the revision and shows the ``pg_dump`` command; after taking it, the
operator runs ``voicebox-worker db upgrade --backed-up``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from backend.config import Settings
from backend.db.errors import DatabaseError, SchemaMismatchError
from backend.db.postgres import PostgresDatabase, pg_engine, revision_of
from backend.storage.atomic import publish
from migrations.runner import MigrationResult, alembic_config, refuse_unknown

log = logging.getLogger(__name__)

#: the advisory lock key every voicebox-worker migrator takes (any constant; "vbox" in ASCII)
ADVISORY_LOCK_KEY = 0x76626F78
PG_DUMP_TIMEOUT_SECONDS = 3600


class BackupRequiredError(DatabaseError):
    """An upgrade of a PostgreSQL library was refused: no backup could be taken by this worker."""


def dump_command(
    settings: Settings, target: Path | str = "voicebox-before-upgrade.dump"
) -> list[str]:
    """The ``pg_dump`` command for this database, password left to ``PGPASSWORD``/``.pgpass``."""
    url = make_url(settings.database_url or "")
    cmd = ["pg_dump", "--format=custom", f"--file={target}"]
    if url.host:
        cmd.append(f"--host={url.host}")
    if url.port:
        cmd.append(f"--port={url.port}")
    if url.username:
        cmd.append(f"--username={url.username}")
    cmd.append(url.database or "postgres")
    return cmd


def pg_dump_backup(settings: Settings, revision: str | None) -> Path:
    """Run ``pg_dump`` into ``db/backups`` on the volume; raises ``BackupRequiredError`` when it cannot."""
    binary = shutil.which("pg_dump")
    if binary is None:
        raise BackupRequiredError("pg_dump is not installed on this worker")
    settings.backups_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = settings.backups_dir / f"voicebox-pg-{revision or 'none'}-{stamp}.dump"
    url = make_url(settings.database_url or "")
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        value = url.query.get(key)
        if isinstance(value, str):
            env[f"PG{key.upper()}"] = value
    tmp = target.with_name(target.name + ".partial")
    proc = subprocess.run(
        [binary, *dump_command(settings, tmp)[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=PG_DUMP_TIMEOUT_SECONDS,
        check=False,
    )
    if proc.returncode != 0 or not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise BackupRequiredError(f"pg_dump failed ({detail})")
    publish(tmp, target)  # the dump is durable before it counts as a backup
    return target


def _user_tables(conn: Connection) -> list[str]:
    rows = conn.execute(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> 'alembic_version'"
        )
    )
    return sorted(str(row[0]) for row in rows)


def _library_rows(conn: Connection) -> int:
    total = 0
    for table in ("profiles", "profile_samples", "generations"):
        total += int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)
    return total


def migrate_postgres(
    settings: Settings,
    db: PostgresDatabase,
    *,
    target: str,
    known: list[str],
    backed_up: bool = False,
) -> MigrationResult:
    """Bring the server database to ``target`` under the advisory lock; the result shape of the volume's."""
    from alembic import command

    started = time.monotonic()
    engine = pg_engine(settings, pool=False)
    try:
        with db._translated(), engine.connect() as conn:
            # fast path without the lock: most cold starts find the database at head
            found = revision_of(conn)
            conn.commit()
            if found == target:
                return MigrationResult("current", found, target, seconds=time.monotonic() - started)
            refuse_unknown(found, known, target)
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            conn.commit()
            try:
                found = revision_of(
                    conn
                )  # again under the lock: a peer may have migrated meanwhile
                conn.commit()
                if found == target:
                    return MigrationResult(
                        "current", found, target, seconds=time.monotonic() - started
                    )
                refuse_unknown(found, known, target)
                if found is not None and known.index(found) > known.index(target):
                    raise SchemaMismatchError(
                        f"refusing to downgrade automatically from {found!r} to {target!r}; "
                        "use `voicebox-worker db downgrade`"
                    )
                if found is None and _user_tables(conn):
                    raise SchemaMismatchError(
                        "the PostgreSQL database has tables but no Alembic revision: it is not a "
                        "voicebox-worker database; point VOICEBOX_DATABASE_URL at an empty one"
                    )
                backup = None
                if found is not None and _library_rows(conn) and not backed_up:
                    conn.commit()
                    backup = _backup_or_refuse(settings, found, target)
                conn.commit()
                with conn.begin():
                    command.upgrade(alembic_config(conn), target)
                after = revision_of(conn)
                conn.commit()
                if after != target:
                    raise DatabaseError(f"upgrade did not reach {target!r} (at {after!r})")
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                conn.commit()
    finally:
        engine.dispose()
    action = "upgraded" if found is not None else "created"
    result = MigrationResult(action, found, target, backup=backup)
    result.seconds = time.monotonic() - started
    log.info("database %s: %s -> %s", action, found, target)
    return result


def _backup_or_refuse(settings: Settings, found: str, target: str) -> str:
    try:
        return pg_dump_backup(settings, found).name
    except (BackupRequiredError, OSError, subprocess.TimeoutExpired) as exc:
        command_line = " ".join(dump_command(settings))
        raise BackupRequiredError(
            f"the PostgreSQL database is at revision {found!r} and this image would upgrade it to "
            f"{target!r}, but no backup could be taken ({exc}); take one with `{command_line}` "
            "(password from PGPASSWORD), then run `voicebox-worker db upgrade --backed-up`"
        ) from None
