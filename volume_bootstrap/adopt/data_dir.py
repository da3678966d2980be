"""Adopting a Voicebox data directory (``voicebox.db`` with ``profiles/`` and ``generations/``) into the
volume, or onto the PostgreSQL server: locate and snapshot the source, plan, refuse a volume holding another
library, copy the files, convert and publish under the lease (the package docstring says how).
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.db.sqlite_files import integrity_check, read_revision
from backend.db.volume_db import VolumeDatabase
from backend.storage.blobs import BlobStore
from volume_bootstrap.adopt.database_file import adopt_database_file
from volume_bootstrap.adopt.errors import AdoptionError
from volume_bootstrap.adopt.files import CopiedFiles, copy_files, remove_created, remove_moved
from volume_bootstrap.adopt.legacy import CORE_TABLES
from volume_bootstrap.adopt.plan import Plan
from volume_bootstrap.adopt.planning import build_plan
from volume_bootstrap.adopt.report import finish_report, rerun_report
from volume_bootstrap.adopt.values import source_roots


def locate_source(data_dir: Path) -> tuple[Path, Path]:
    """The legacy data dir and its database; accepts the data dir, its parent, or the ``.db`` file."""
    data_dir = data_dir.expanduser().absolute()
    if data_dir.is_file():
        return data_dir.parent, data_dir
    for root in (data_dir, data_dir / "data"):
        if (root / "voicebox.db").is_file():
            return root, root / "voicebox.db"
    raise AdoptionError(
        f"no voicebox.db in {data_dir} (nor in {data_dir / 'data'}); pass the Voicebox data directory"
    )


def snapshot_database(source: Path, target: Path) -> None:
    """A consistent private copy of the legacy file, never touching the source.

    The source's journal or WAL files are copied beside it first, so a copy taken after a crash of the
    legacy app is recovered in the copy (SQLite cannot roll back a hot journal through a read-only handle).
    """
    staging = target.parent / f"stage-{target.name}"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        staged = staging / source.name
        shutil.copyfile(source, staged)
        for suffix in ("-journal", "-wal", "-shm"):
            side = Path(f"{source}{suffix}")
            if side.is_file():
                shutil.copyfile(side, Path(f"{staged}{suffix}"))
        src = sqlite3.connect(str(staged))
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    except sqlite3.DatabaseError as exc:
        raise AdoptionError(f"{source} is not a readable SQLite database ({exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def volume_rows(path: Path) -> dict[str, int]:
    """Rows in our tables of a volume database (missing tables count as empty)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return {
            t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            for t in CORE_TABLES
            if t in tables
        }
    finally:
        conn.close()


def refuse_nonempty(path: Path) -> None:
    """Adoption never merges: a volume database holding rows (or unreadable) is refused."""
    try:
        rows = volume_rows(path)
    except sqlite3.DatabaseError as exc:
        raise AdoptionError(
            f"the volume database cannot be read ({exc}); restore a backup with "
            "`voicebox-worker db restore` before adopting"
        ) from exc
    if any(rows.values()):
        raise AdoptionError(
            "the volume already has a database with data "
            f"({', '.join(f'{n} {t}' for t, n in rows.items())}); adoption does not merge — export the "
            "legacy profiles as bundles and import them (POST /profiles/import), or adopt into an empty volume"
        )


def holds_plan(path: Path, plan: Plan) -> bool:
    """Whether the volume database already holds every row this adoption would create (same ids): the same
    source adopted before. An empty plan holds nothing, so an empty legacy database is never "adopted"."""
    wanted = {
        "profiles": {row["id"] for row in plan.profiles},
        "profile_samples": {row["id"] for row in plan.samples},
        "generations": {row["id"] for row in plan.generations},
    }
    if not any(wanted.values()) or plan.ids_assigned:
        return False  # rows without ids get new ones each run: no way to recognise them
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.DatabaseError:
        return False
    try:
        for table, ids in wanted.items():
            present = {r[0] for r in conn.execute(f'SELECT id FROM "{table}"')}
            if not ids <= present:
                return False
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()
    return True


def adopt_data_dir(settings: Settings, data_dir: Path, move: bool = False) -> dict[str, Any]:
    """Take a Voicebox data directory (``voicebox.db`` + ``profiles/`` + ``generations/``) into the volume.

    Refuses a volume whose database already holds rows (no silent merge). Files are copied first (atomic
    writes), then under the lease the legacy database is converted on the work copy, upgraded to head and
    published. Any failure publishes nothing and removes the files this run created. With ``move`` the adopted
    source files are removed only after the publish.
    """
    from migrations.runner import head_revision
    from volume_bootstrap.layout import ensure_layout

    started = time.monotonic()
    source_root, source_db = locate_source(Path(data_dir))
    if source_root.resolve() == settings.data_dir.resolve():
        raise AdoptionError(
            f"{source_root} is the volume's own data directory; to adopt a legacy database already on the "
            f"volume, put it at {settings.db_path} and run `voicebox-worker bootstrap`"
        )
    ensure_layout(settings)
    head = head_revision()
    db = VolumeDatabase(settings, expected_revision=head)
    blobs = BlobStore(settings)
    settings.local_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="adopt-", dir=settings.local_dir))
    copied = CopiedFiles()
    try:
        legacy = scratch / "legacy.db"
        plan = _plan_snapshot(settings, source_root, source_db, legacy)

        # Fail before copying gigabytes; checked again under the lease. A rerun of this same adoption is a
        # no-op that says so (its rows are all there), not a refusal.
        if settings.database_url:
            pass  # PostgreSQL: the copy below refuses a server database holding another library
        elif settings.db_path.exists():
            db.refresh(force=True)
            if holds_plan(db.local_path, plan):
                return rerun_report(plan, source_root, source_db, head, started)
            refuse_nonempty(db.local_path)

        copy_files(plan, source_root, blobs, copied)
        backup = None
        if settings.database_url:
            report = _adopt_into_server(settings, legacy, scratch, source_root, copied.stored, head)
        else:
            report, backup = _adopt_into_volume(
                settings, db, legacy, source_root, copied.stored, head
            )
    except BaseException:
        remove_created(blobs, copied.created)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    moved = remove_moved(copied.stored, source_root) if move else 0
    return finish_report(
        report,
        copied,
        source_root=source_root,
        source_db=source_db,
        head=head,
        backup=backup,
        moved=moved,
        started=started,
    )


def _plan_snapshot(settings: Settings, source_root: Path, source_db: Path, legacy: Path) -> Plan:
    """Snapshot the legacy database into ``legacy`` and plan its adoption (nothing is written yet)."""
    snapshot_database(source_db, legacy)
    verdict = integrity_check(legacy)
    if verdict != "ok":
        raise AdoptionError(f"{source_db} fails integrity_check ({verdict}); nothing was adopted")
    plan_conn = sqlite3.connect(f"file:{legacy}?mode=ro", uri=True)
    plan_conn.row_factory = sqlite3.Row
    try:
        return build_plan(
            lambda sql: [dict(r) for r in plan_conn.execute(sql)],
            source_roots(settings, source_root),
        )
    finally:
        plan_conn.close()


def _adopt_into_server(
    settings: Settings,
    legacy: Path,
    scratch: Path,
    source_root: Path,
    stored: dict[str, Any],
    head: str,
) -> dict[str, Any]:
    """``db adopt`` with ``VOICEBOX_DATABASE_URL``: adopt in a scratch file, then the verified copy onto the
    server (one transaction; a server database holding another library is refused, nothing is half-written)."""
    from migrations.runner import schema_differences, upgrade_file
    from volume_bootstrap.library_copy import copy_file_to_postgres

    work = scratch / "adopted.db"
    shutil.copyfile(legacy, work)
    report = adopt_database_file(settings, work, source_root=source_root, stored=stored)
    upgrade_file(work, head)
    verdict = integrity_check(work)
    diffs = schema_differences(work) if verdict == "ok" else []
    if verdict != "ok" or read_revision(work) != head or diffs:
        raise AdoptionError(f"adopted database failed its checks ({verdict}, {diffs[:5]})")
    copied = copy_file_to_postgres(settings, work, settings.database_url or "")
    if copied.action == "already identical":
        report["message"] = (
            "already adopted: the server database already holds exactly this library"
        )
    report["database_copy"] = copied.as_dict()
    return report


def _adopt_into_volume(
    settings: Settings,
    db: VolumeDatabase,
    legacy: Path,
    source_root: Path,
    stored: dict[str, Any],
    head: str,
) -> tuple[dict[str, Any], str | None]:
    """Convert, upgrade and check on the lease-held work copy; published when the block exits
    cleanly."""
    from backend.db.backups import backup_shared
    from migrations.runner import schema_differences, upgrade_file

    backup = None
    with db.write_file(check_schema=False) as work:
        if work.path.exists():
            refuse_nonempty(work.path)
            backup = backup_shared(settings, read_revision(work.path)).name
        shutil.copyfile(legacy, work.path)
        Path(f"{work.path}-journal").unlink(missing_ok=True)
        report = adopt_database_file(settings, work.path, source_root=source_root, stored=stored)
        upgrade_file(work.path, head)
        verdict = integrity_check(work.path)
        if verdict != "ok" or read_revision(work.path) != head:
            raise AdoptionError(f"adopted database failed its checks ({verdict})")
        diffs = schema_differences(work.path)
        if diffs:
            raise AdoptionError(f"adopted database differs from the models: {diffs[:5]}")
    return report, backup
