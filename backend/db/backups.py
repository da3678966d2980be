"""Verified, rotating backups of the volume database (``voicebox/db/backups``), and the library evidence.

Why verified: a backup is only worth something if it can be restored, so a copy counts only after
``integrity_check`` passed and its row counts were read; an empty or unreadable file is refused instead of
being filed as a backup (a zero-byte "backup" once stood in for a library that was gone). Why rotating: a bad
import or a mistaken delete months after the last migration needs something recent to go back to, so the lease
holder copies the database after a publish whenever the newest backup is older than ``VOICEBOX_BACKUP_INTERVAL``,
keeping the newest ``VOICEBOX_BACKUPS_KEEP`` plus one per hour for ``VOICEBOX_BACKUPS_HOURLY`` hours and one per
day for ``VOICEBOX_BACKUPS_DAILY`` days. ``db backup``, ``db restore`` and the pre-migration backup use this set.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from backend.config import Settings
from backend.db.errors import DatabaseError
from backend.storage.atomic import publish

log = logging.getLogger(__name__)

BACKUP_GLOB = "voicebox-*.db"
STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
#: how much of a stamp names its hour ("20261129T04") and its day ("20261129")
HOUR_PREFIX = len("YYYYmmddTHH")
DAY_PREFIX = len("YYYYmmdd")
LIBRARY_TABLES = ("profiles", "profile_samples", "generations")
#: the folders whose files are the library itself: any file there means the volume is not new
LIBRARY_DIRS = ("profiles", "generations")
EVIDENCE_SCAN_LIMIT = (
    10  # evidence is a yes/no question: stop walking once this many files were seen
)
PARTIAL_GRACE_SECONDS = 3600.0


class BackupRefusedError(DatabaseError):
    """The source is empty or unreadable: filing it as a backup would only hide that nothing was saved."""


@dataclass(frozen=True)
class DatabaseFacts:
    """What a database file holds, read without trusting it: integrity verdict, revision, library rows."""

    size: int
    integrity: str
    revision: str | None
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def good(self) -> bool:
        """Restorable: non-empty, passes ``integrity_check`` and has the library tables."""
        return self.size > 0 and self.integrity == "ok" and bool(self.rows)

    @property
    def library_rows(self) -> int:
        return sum(self.rows.values())


@dataclass(frozen=True)
class BackupInfo:
    name: str
    taken_at: datetime | None
    facts: DatabaseFacts

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "size": self.facts.size,
            "integrity": self.facts.integrity,
            "revision": self.facts.revision,
            "rows": self.facts.rows,
            "good": self.facts.good,
        }


def inspect_database(path: Path) -> DatabaseFacts:
    """Integrity, revision and row counts of ``path``; never raises for a bad file (it is reported)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return DatabaseFacts(0, f"unreadable: {exc.strerror or exc}", None)
    if size == 0:
        return DatabaseFacts(0, "empty file", None)
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return DatabaseFacts(size, f"unreadable: {exc}", None)
    try:
        integrity = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        rows = {
            name: int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
            for name in LIBRARY_TABLES
            if name in tables
        }
        revision = None
        if "alembic_version" in tables:
            found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = found[0] if found else None
        return DatabaseFacts(size, integrity, revision, rows)
    except sqlite3.DatabaseError as exc:
        return DatabaseFacts(size, f"unreadable: {exc}", None)
    finally:
        conn.close()


def backup_time(path: Path) -> datetime | None:
    """When a backup was taken, from its name (``voicebox-<revision>-<UTC stamp>.db``)."""
    stamp = path.stem.rsplit("-", 1)[-1]
    try:
        return datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def list_backups(settings: Settings) -> list[Path]:
    """The backup set, newest first (by the time in the name, not the revision that precedes it)."""
    if not settings.backups_dir.is_dir():
        return []
    found = [p for p in settings.backups_dir.glob(BACKUP_GLOB) if p.is_file()]
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda p: (backup_time(p) or oldest, p.name), reverse=True)


def inspect_backup(path: Path) -> BackupInfo:
    return BackupInfo(path.name, backup_time(path), inspect_database(path))


def newest_good_backup(settings: Settings) -> BackupInfo | None:
    for path in list_backups(settings):
        info = inspect_backup(path)
        if info.facts.good:
            return info
    return None


def restore_hint(settings: Settings) -> str:
    """The newest restorable backup and the command that restores it (for errors and refusals)."""
    best = newest_good_backup(settings)
    if best is None:
        return "no restorable backup exists on the volume"
    return (
        f"the newest good backup is {best.name} ({best.facts.library_rows} rows): "
        f"voicebox-worker db restore {best.name}"
    )


def take_backup(settings: Settings, source: Path, revision: str | None) -> BackupInfo:
    """Copy ``source`` into the set, verify the copy, then rotate; refuses an empty or unreadable source.

    The copy is written to a ``.partial`` name and checked (``integrity_check``, row counts) before it is
    fsynced and renamed into the set (``storage.atomic.publish``), so a kill or a failed check never leaves
    something that looks like a backup.
    """
    if not source.exists() or source.stat().st_size == 0:
        raise BackupRefusedError("not backed up: the database file is missing or empty")
    settings.backups_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime(STAMP_FORMAT)
    target = settings.backups_dir / f"voicebox-{revision or 'none'}-{stamp}.db"
    partial = settings.backups_dir / f".{target.name}.partial"
    try:
        with open(source, "rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)
        facts = inspect_database(partial)
        if not facts.good:
            raise BackupRefusedError(
                f"not backed up: the database fails its check ({facts.integrity})"
            )
        publish(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    rotate(settings)
    return BackupInfo(target.name, backup_time(target), facts)


def backup_shared(settings: Settings, revision: str | None) -> Path:
    """Copy the (immutable, only ever replaced) shared file into the verified set before a migration, a
    downgrade or an adoption replaces it; ``revision`` names the copy. Raises ``BackupRefusedError`` for an
    empty or unreadable file: that is never filed as a backup."""
    return settings.backups_dir / take_backup(settings, settings.db_path, revision).name


def backup_due(settings: Settings, now: datetime | None = None) -> float | None:
    """Seconds until the next rotating backup is due (0: now), or None when rotation is off."""
    interval = settings.backup_interval_seconds
    if interval <= 0:
        return None
    backups = list_backups(settings)
    newest = backup_time(backups[0]) if backups else None
    if newest is None:
        return 0.0
    age = ((now or datetime.now(UTC)) - newest).total_seconds()
    return max(0.0, interval - age)


def rotate(settings: Settings) -> list[str]:
    """Remove what the rotation does not keep; returns the names removed.

    Kept: the newest ``backups_keep``, the newest of each of the last ``backups_hourly`` hours that have one,
    and the newest of each of the last ``backups_daily`` days that have one. Abandoned ``.partial`` copies
    older than an hour go too.
    """
    backups = list_backups(settings)
    keep = set(backups[: settings.backups_keep])
    # bucket keys are prefixes of the stamp: "YYYYmmddTHH" (11 characters) is the hour, "YYYYmmdd" the day
    for width, count in (
        (HOUR_PREFIX, settings.backups_hourly),
        (DAY_PREFIX, settings.backups_daily),
    ):
        buckets: set[str] = set()
        for path in backups:
            taken = backup_time(path)
            bucket = taken.strftime(STAMP_FORMAT)[:width] if taken else path.name
            if bucket in buckets:
                continue
            if len(buckets) >= count:
                break
            buckets.add(bucket)
            keep.add(path)
    removed = []
    for path in backups:
        if path not in keep:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    now = time.time()
    for partial in settings.backups_dir.glob(".*.partial") if settings.backups_dir.is_dir() else []:
        try:
            if now - partial.stat().st_mtime > PARTIAL_GRACE_SECONDS:
                partial.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
    return removed


def library_evidence(settings: Settings) -> list[str]:
    """What on the volume shows a library existed: files under ``profiles/`` or ``generations/`` and
    non-empty backups. Empty on a genuinely new volume. A bounded walk: it answers yes/no, not how much.
    """
    found: list[str] = []
    for top in LIBRARY_DIRS:
        base = settings.data_dir / top
        count = 0
        for _dirpath, _dirs, files in os.walk(base):
            count += len(files)
            if count >= EVIDENCE_SCAN_LIMIT:
                break
        if count:
            more = "+" if count >= EVIDENCE_SCAN_LIMIT else ""
            found.append(f"{count}{more} file(s) under {top}/")
    backups = [p for p in list_backups(settings) if p.stat().st_size > 0]
    if backups:
        found.append(f"{len(backups)} backup(s) in db/backups/")
    return found


#: a database with no tables is one page or a few; a file larger than this holds something (or is corrupt,
#: which the integrity check reports with its own hint)
TABLELESS_MAX_BYTES = 64 * 1024


def database_state(path: Path, max_bytes: int | None = TABLELESS_MAX_BYTES) -> str | None:
    """``missing``, ``empty`` or ``without tables`` for a database that holds no library, else None.

    Cheap (a stat, and only for a small file one read into memory): bootstrap, every writer and ``/health``
    ask it. The shared file is read as bytes, never opened by SQLite (which must not lock it on the volume).
    ``max_bytes=None`` looks into a file of any size (for local copies, where reading is cheap).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size == 0:
        return "empty"
    if max_bytes is not None and size > max_bytes:
        return None
    conn = sqlite3.connect(":memory:")
    try:
        conn.deserialize(path.read_bytes())
        found = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]
    except sqlite3.DatabaseError:
        return None  # unreadable is corruption, reported by the integrity check with its own hint
    finally:
        conn.close()
    return None if found else "without tables"


def library_refusal(settings: Settings, state: str) -> DatabaseError | None:
    """The refusal for a database in ``state`` on a volume that holds a library; None on a new volume."""
    from backend.db.errors import LibraryMissingError

    evidence = library_evidence(settings)
    if not evidence:
        return None
    return LibraryMissingError(
        f"the volume database is {state} but the volume holds a library ({'; '.join(evidence)}); "
        f"refusing to create an empty database over it — {restore_hint(settings)}"
    )
