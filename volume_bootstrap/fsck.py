"""Reconcile the files on the volume with the database.

Why: a worker killed mid-generation leaves an intent row (and maybe a file); a worker killed mid-write leaves a
temp file. Only work whose owner's lease expired is touched — a booting worker never fails a live peer's job.
Bounded at boot (``bounded=True``) so a huge volume cannot delay readiness: the file of at most
``BOOT_ROWS`` rows is checked per boot (within ``BOOT_SECONDS``), resuming after the row the last boot stopped
at (``cache/fsck-cursor``); ``voicebox-worker volume fsck`` checks every row.

Files with no row are never trashed wholesale: they are moved only when the database is healthy (integrity ok,
at this code's revision, holding library rows) and was not created by this boot, and at most
``orphan_move_limit`` of them per run unless ``force`` (``volume fsck --repair --force``); the rest are reported.
A database that lost its rows would otherwise make every sample look like an orphan.
"""

from __future__ import annotations

import bisect
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import select

from backend.config import Settings
from backend.db.backups import inspect_database
from backend.db.interface import Database
from backend.db.models import (
    Generation,
    GenerationVersion,
    Profile,
    ProfileSample,
    new_id,
    utcnow,
)
from backend.db.volume_db import VolumeDatabase
from backend.statuses import ACTIVE, GenerationStatus
from backend.storage.blobs import BlobStore, sha256_file
from backend.storage.retention import expire_exports
from backend.storage.trash import Trash

log = logging.getLogger(__name__)

TMP_GRACE_SECONDS = 3600.0
ORPHAN_GRACE_SECONDS = 24 * 3600.0
BOOT_LIMIT = 500
BOOT_ROWS = 2000
BOOT_SECONDS = 2.0
ORPHAN_MOVE_FLOOR = 10
ORPHAN_MOVE_FRACTION = 0.05
SUMMARY_NAMES = 5
ACTIVE_STATUSES = tuple(sorted(ACTIVE))  # backend/statuses.py
CURSOR_NAME = "fsck-cursor"


@dataclass
class FsckReport:
    expired_completed: list[str] = field(default_factory=list)
    expired_failed: list[str] = field(default_factory=list)
    tmp_removed: int = 0
    orphans_trashed: list[str] = field(default_factory=list)
    orphans_seen: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    exports_expired: list[str] = field(default_factory=list)
    orphans_held: list[str] = field(default_factory=list)
    orphans_held_reason: str | None = None
    rows_checked: int = 0
    rows_total: int = 0
    trash_purged: int = 0
    truncated: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["counts"] = {
            "expired_completed": len(self.expired_completed),
            "expired_failed": len(self.expired_failed),
            "tmp_removed": self.tmp_removed,
            "orphans": len(self.orphans_seen),
            "orphans_trashed": len(self.orphans_trashed),
            "orphans_held": len(self.orphans_held),
            "missing_files": len(self.missing_files),
            "exports_expired": len(self.exports_expired),
            "rows_checked": self.rows_checked,
            "rows_total": self.rows_total,
            "trash_purged": self.trash_purged,
        }
        return data

    def summary(self, names: int = SUMMARY_NAMES) -> dict[str, object]:
        """Counts plus the first few names of each list: what the one bootstrap line carries."""
        data = self.as_dict()
        for key, value in list(data.items()):
            if isinstance(value, list):
                data[key] = value[:names]
        return data


def _old(path: Path, grace: float, now: float) -> bool:
    try:
        return now - path.stat().st_mtime > grace
    except FileNotFoundError:
        return False


def fsck_volume(
    settings: Settings,
    db: Database,
    *,
    repair: bool = False,
    bounded: bool = False,
    tmp_grace: float = TMP_GRACE_SECONDS,
    orphan_grace: float = ORPHAN_GRACE_SECONDS,
    force: bool = False,
    database_created: bool = False,
) -> FsckReport:
    """``force`` lifts the per-run orphan bound (never the health gate); ``database_created``: this boot
    created the database, so no file can be judged an orphan by it."""
    started = time.monotonic()
    report = FsckReport()
    limit = BOOT_LIMIT if bounded else None
    blobs = BlobStore(settings)
    _resolve_expired_jobs(db, blobs, report, repair, limit)
    _remove_stale_tmp(settings, report, repair, tmp_grace, limit)

    def gate() -> str | None:
        return _orphan_gate(db, database_created)

    _check_files(settings, db, blobs, report, repair, orphan_grace, limit, gate, force)
    if repair:
        report.trash_purged = len(Trash(settings).purge(settings.trash_days * 86400, limit))
        # exports past VOICEBOX_EXPORT_TTL_HOURS (backend/storage/retention.py)
        expiry = expire_exports(settings, limit=limit)
        report.exports_expired = expiry.removed
        report.truncated |= expiry.truncated
    report.seconds = time.monotonic() - started
    return report


def _orphan_gate(db: Database, database_created: bool) -> str | None:
    """Why no file may be moved as an orphan now, or None when the database can be trusted to judge."""
    if database_created:
        return "the database was created by this boot"
    if not isinstance(db, VolumeDatabase):
        return _server_orphan_gate(db)
    facts = inspect_database(db.local_path)
    if facts.integrity != "ok":
        return f"the database fails integrity_check ({facts.integrity})"
    if db.expected_revision is not None and facts.revision != db.expected_revision:
        return f"the database is at revision {facts.revision!r}, not {db.expected_revision!r}"
    if facts.library_rows == 0:
        return "the database holds no library rows"
    return None


def _server_orphan_gate(db: Database) -> str | None:
    """The same questions for a database server: at this code's revision, and holding library rows."""
    from sqlalchemy import func

    revision = db.current_revision()
    if db.expected_revision is not None and revision != db.expected_revision:
        return f"the database is at revision {revision!r}, not {db.expected_revision!r}"
    with db.read() as session:
        rows = sum(
            session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Profile, ProfileSample, Generation)
        )
    return None if rows else "the database holds no library rows"


def orphan_move_limit(files: int) -> int:
    """Orphans one run may move: a small fraction of the library's files, never fewer than a floor."""
    return max(ORPHAN_MOVE_FLOOR, int(files * ORPHAN_MOVE_FRACTION))


def _resolve_expired_jobs(
    db: Database, blobs: BlobStore, report: FsckReport, repair: bool, limit: int | None
) -> None:
    now = utcnow()
    query = (
        select(Generation.id)
        .where(Generation.status.in_(ACTIVE_STATUSES), Generation.lease_expires_at < now)
        .limit(limit)
    )
    with db.read() as session:
        expired = list(session.scalars(query))
    if not expired or not repair:
        report.expired_failed.extend(expired)
        return
    with db.write() as session:
        for gen_id in expired:
            row = session.get(Generation, gen_id)
            if row is None or row.status not in ACTIVE_STATUSES:
                continue
            if row.lease_expires_at is None or row.lease_expires_at >= utcnow():
                continue  # a live owner renewed it meanwhile
            if row.audio_path and blobs.exists(row.audio_path):
                # The file was made durable before the owner died: finish the row for it.
                path = blobs.path(row.audio_path)
                row.sha256 = sha256_file(path)
                row.size_bytes = path.stat().st_size
                row.duration = row.duration or _duration(path)
                row.status = GenerationStatus.COMPLETED
                row.completed_at = utcnow()
                if not row.versions:  # a completed generation has its default version
                    session.add(
                        GenerationVersion(
                            id=new_id(),
                            generation_id=row.id,
                            label="original",
                            audio_path=row.audio_path,
                            is_default=True,
                            duration=row.duration,
                            sha256=row.sha256,
                            size_bytes=row.size_bytes,
                            created_at=utcnow(),
                        )
                    )
                report.expired_completed.append(gen_id)
            else:
                row.status = GenerationStatus.FAILED
                row.error = (
                    f"worker {row.owner_worker_id or '?'} stopped before finishing "
                    "(its lease expired); retry the generation"
                )
                row.audio_path = None
                report.expired_failed.append(gen_id)
            row.lease_expires_at = None


def _duration(path: Path) -> float | None:
    try:
        import soundfile

        info = soundfile.info(str(path))
        return float(info.frames) / float(info.samplerate)
    except Exception:  # a duration is a nicety here; the file's presence is what matters
        return None


def _remove_stale_tmp(
    settings: Settings, report: FsckReport, repair: bool, grace: float, limit: int | None
) -> None:
    now = time.time()
    candidates: list[Path] = []
    if settings.tmp_dir.is_dir():
        candidates.extend(p for p in settings.tmp_dir.iterdir())
    if settings.db_dir.is_dir():
        candidates.extend(settings.db_dir.glob(f"{settings.db_path.name}.tmp-*"))
    for path in candidates:
        if limit is not None and report.tmp_removed >= limit:
            report.truncated = True
            break
        if _old(path, grace, now):
            if repair:
                if path.is_dir():
                    import shutil

                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            report.tmp_removed += 1


def _check_files(
    settings: Settings,
    db: Database,
    blobs: BlobStore,
    report: FsckReport,
    repair: bool,
    grace: float,
    limit: int | None,
    gate: Callable[[], str | None],
    force: bool,
) -> None:
    with db.read() as session:
        rows = [
            *session.execute(select(ProfileSample.id, ProfileSample.audio_path)),
            *session.execute(select(Profile.id, Profile.avatar_path)),
            *session.execute(
                select(Generation.id, Generation.audio_path).where(
                    Generation.status == GenerationStatus.COMPLETED
                )
            ),
            # the default version's file is the generation's own (named above): the others only
            *session.execute(
                select(GenerationVersion.id, GenerationVersion.audio_path).where(
                    GenerationVersion.is_default.is_(False)
                )
            ),
        ]
        # Any row still naming a file keeps it (a failed or adopted row may); only completed rows
        # are expected to have one, so only those are reported when it is missing.
        other_paths = set(
            session.scalars(
                select(Generation.audio_path).where(
                    Generation.status != GenerationStatus.COMPLETED,
                    Generation.audio_path.is_not(None),
                )
            )
        )
    named = sorted((str(row_id), rel) for row_id, rel in rows if rel)
    referenced = {rel for _row_id, rel in named} | other_paths
    report.rows_total = len(named)
    _check_rows(settings, blobs, report, named, bounded=limit is not None)
    now = time.time()
    seen = 0
    orphans: list[str] = []
    for top in ("profiles", "generations"):
        base = settings.data_dir / top
        if not base.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                seen += 1
                if limit is not None and seen > limit * 20:
                    report.truncated = True
                    break
                path = Path(dirpath) / name
                rel = path.relative_to(settings.data_dir).as_posix()
                if rel in referenced or not _old(path, grace, now):
                    continue
                orphans.append(rel)
    report.orphans_seen.extend(orphans)
    if not repair or not orphans:
        return
    bound = None if force else orphan_move_limit(seen)
    held_reason = gate()  # asked only when there is something to move: it reads the whole database
    if held_reason is not None:
        report.orphans_held, report.orphans_held_reason = orphans, held_reason
        log.warning("fsck: %d file(s) with no row left in place: %s", len(orphans), held_reason)
        return
    movable = orphans if bound is None else orphans[:bound]
    for rel in movable:
        report.orphans_trashed.append(blobs.move_to_trash(rel))
    if len(movable) < len(orphans):
        report.orphans_held = orphans[len(movable) :]
        report.orphans_held_reason = (
            f"more than {bound} file(s) with no row in one run; review them and run "
            "`voicebox-worker volume fsck --repair --force` to move the rest"
        )
        log.warning("fsck: %s", report.orphans_held_reason)


def _check_rows(
    settings: Settings,
    blobs: BlobStore,
    report: FsckReport,
    named: list[tuple[str, str]],
    *,
    bounded: bool,
) -> None:
    """Report rows whose file is missing: all of them, or at boot a slice resuming after the last boot's."""
    if not bounded:
        todo = named
    else:
        cursor_path = settings.cache_dir / CURSOR_NAME
        try:
            after = cursor_path.read_text().strip()
        except OSError:
            after = ""
        start = bisect.bisect_right(named, (after, "\U0010ffff")) if after else 0
        todo = (named[start:] + named[:start])[:BOOT_ROWS]
    deadline = time.monotonic() + BOOT_SECONDS
    last = None
    for row_id, rel in todo:
        if bounded and time.monotonic() > deadline:
            report.truncated = True
            break
        report.rows_checked += 1
        last = row_id
        if not blobs.exists(rel):
            report.missing_files.append(f"{row_id}:{rel}")
    if bounded and last is not None:
        if report.rows_checked < len(named):
            report.truncated = True
        try:
            settings.cache_dir.mkdir(parents=True, exist_ok=True)
            (settings.cache_dir / CURSOR_NAME).write_text(last)
        except OSError:
            log.warning("fsck: could not save where the row check stopped", exc_info=True)
