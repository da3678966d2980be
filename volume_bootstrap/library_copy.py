"""``voicebox-worker db copy``: the volume's SQLite library onto PostgreSQL (``--to URL``) and back (``--from``).

Policy on top of ``backend.db.copy`` (the verified, one-transaction row copy): which side is migrated first, and
how the volume side is written — through the lease and an atomic publish like every other write, so workers
running on the volume meanwhile never see a half-copied library. Audio files stay where they are: both
databases name them by their path on the volume.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from backend.config import Settings, database_url, redact_url
from backend.db.copy import CopyReport, copy_rows
from backend.db.errors import DatabaseError, SchemaMismatchError
from backend.db.postgres import PostgresDatabase, pg_engine
from backend.db.sqlite_files import read_revision, sqlite_engine
from backend.db.volume_db import SHARED_NAME, VolumeDatabase


def _postgres(settings: Settings, url: str) -> tuple[Settings, PostgresDatabase]:
    normal = database_url(url)
    if normal is None:
        raise DatabaseError("no PostgreSQL URL given")
    target = settings.with_overrides(database_url=normal)
    return target, PostgresDatabase(target)


def copy_to_postgres(settings: Settings, url: str, *, replace: bool = False) -> CopyReport:
    """Volume SQLite → PostgreSQL (migrated to head first when empty)."""
    from migrations.runner import head_revision

    head = head_revision()
    volume = VolumeDatabase(settings, expected_revision=head)
    volume.refresh(force=True)
    if volume.local_revision != head:
        volume.close()
        raise SchemaMismatchError(
            f"the volume database is at revision {volume.local_revision!r}, not {head!r}: "
            "run `voicebox-worker db upgrade` first"
        )
    scratch = Path(tempfile.mkdtemp(prefix="copy-", dir=_scratch_dir(settings)))
    snapshot = scratch / "source.db"
    try:
        shutil.copyfile(
            volume.local_path, snapshot
        )  # a fixed version: the local copy may be swapped
        return copy_file_to_postgres(
            settings, snapshot, url, replace=replace, source_name=SHARED_NAME
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        volume.close()


def copy_file_to_postgres(
    settings: Settings,
    path: Path,
    url: str,
    *,
    replace: bool = False,
    source_name: str | None = None,
) -> CopyReport:
    """A SQLite file at this code's head → PostgreSQL (migrated to head first when empty); also ``db adopt``'s
    last step when ``VOICEBOX_DATABASE_URL`` is set."""
    from migrations.runner import head_revision, known_revisions
    from volume_bootstrap.migrate_pg import migrate_postgres

    head = head_revision()
    pg_settings, pg = _postgres(settings, url)
    try:
        migrate_postgres(pg_settings, pg, target=head, known=known_revisions())
        source_engine = sqlite_engine(path)
        target_engine = pg_engine(pg_settings, pool=False)
        try:
            with source_engine.connect() as source, pg._translated(), target_engine.begin() as tx:
                return copy_rows(
                    source,
                    tx,
                    source_name=source_name or path.name,
                    target_name=redact_url(pg_settings.database_url or ""),
                    revision=head,
                    replace=replace,
                )
        finally:
            source_engine.dispose()
            target_engine.dispose()
    finally:
        pg.close()


def copy_from_postgres(settings: Settings, url: str, *, replace: bool = False) -> CopyReport:
    """PostgreSQL → volume SQLite, published under the lease (created at head when the volume has none)."""
    from migrations.runner import head_revision, upgrade_file
    from volume_bootstrap.layout import ensure_layout

    head = head_revision()
    pg_settings, pg = _postgres(settings, url)
    found = pg.current_revision()
    if found != head:
        pg.close()
        raise SchemaMismatchError(
            f"the PostgreSQL database is at revision {found!r}, not {head!r}: migrate it first "
            "(`VOICEBOX_DATABASE_URL=... voicebox-worker db upgrade`)"
        )
    ensure_layout(settings)
    volume = VolumeDatabase(settings, expected_revision=head)
    report: CopyReport | None = None
    source_engine = pg_engine(pg_settings, pool=False)
    try:
        with volume.write_file(check_schema=False) as work:
            if not work.path.exists():
                upgrade_file(work.path, head)
            revision = read_revision(work.path)
            if revision != head:
                work.publish = False
                raise SchemaMismatchError(
                    f"the volume database is at revision {revision!r}, not {head!r}: "
                    "run `voicebox-worker db upgrade` first"
                )
            target_engine = sqlite_engine(work.path)
            try:
                with (
                    pg._translated(),
                    source_engine.connect() as source,
                    target_engine.begin() as tx,
                ):
                    report = copy_rows(
                        source,
                        tx,
                        source_name=redact_url(pg_settings.database_url or ""),
                        target_name=SHARED_NAME,
                        revision=head,
                        replace=replace,
                    )
            finally:
                target_engine.dispose()
            work.publish = report.action == "copied"
    finally:
        source_engine.dispose()
        volume.close()
        pg.close()
    assert report is not None
    return report


def _scratch_dir(settings: Settings) -> Path:
    settings.local_dir.mkdir(parents=True, exist_ok=True)
    return settings.local_dir
