"""Reconcile the files on the volume with the database.

Why: a worker killed mid-generation leaves an intent row (and maybe a file); a worker killed mid-write leaves a
temp file. Only work whose owner's lease expired is touched — a booting worker never fails a live peer's job.
Bounded at boot (``bounded=True``) so a huge volume cannot delay readiness.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import select

from backend.config import Settings
from backend.db.models import Generation, Profile, ProfileSample, utcnow
from backend.db.volume_db import VolumeDatabase
from backend.storage.blobs import BlobStore, sha256_file
from backend.storage.retention import expire_exports

log = logging.getLogger(__name__)

TMP_GRACE_SECONDS = 3600.0
ORPHAN_GRACE_SECONDS = 24 * 3600.0
BOOT_LIMIT = 500
ACTIVE_STATUSES = ("generating", "loading_model", "queued")


@dataclass
class FsckReport:
    expired_completed: list[str] = field(default_factory=list)
    expired_failed: list[str] = field(default_factory=list)
    tmp_removed: int = 0
    orphans_trashed: list[str] = field(default_factory=list)
    orphans_seen: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    exports_expired: list[str] = field(default_factory=list)
    truncated: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["counts"] = {
            "expired_completed": len(self.expired_completed),
            "expired_failed": len(self.expired_failed),
            "tmp_removed": self.tmp_removed,
            "orphans": len(self.orphans_seen),
            "missing_files": len(self.missing_files),
            "exports_expired": len(self.exports_expired),
        }
        return data


def _old(path: Path, grace: float, now: float) -> bool:
    try:
        return now - path.stat().st_mtime > grace
    except FileNotFoundError:
        return False


def fsck_volume(
    settings: Settings,
    db: VolumeDatabase,
    *,
    repair: bool = False,
    bounded: bool = False,
    tmp_grace: float = TMP_GRACE_SECONDS,
    orphan_grace: float = ORPHAN_GRACE_SECONDS,
) -> FsckReport:
    started = time.monotonic()
    report = FsckReport()
    limit = BOOT_LIMIT if bounded else None
    blobs = BlobStore(settings)
    _resolve_expired_jobs(db, blobs, report, repair, limit)
    _remove_stale_tmp(settings, report, repair, tmp_grace, limit)
    _check_files(settings, db, blobs, report, repair, orphan_grace, limit)
    if repair:  # exports past VOICEBOX_EXPORT_TTL_HOURS (backend/storage/retention.py)
        expiry = expire_exports(settings, limit=limit)
        report.exports_expired = expiry.removed
        report.truncated |= expiry.truncated
    report.seconds = time.monotonic() - started
    return report


def _resolve_expired_jobs(
    db: VolumeDatabase, blobs: BlobStore, report: FsckReport, repair: bool, limit: int | None
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
                row.status = "completed"
                row.completed_at = utcnow()
                report.expired_completed.append(gen_id)
            else:
                row.status = "failed"
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
    candidates = []
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
    db: VolumeDatabase,
    blobs: BlobStore,
    report: FsckReport,
    repair: bool,
    grace: float,
    limit: int | None,
) -> None:
    with db.read() as session:
        referenced: set[str] = set()
        rows = [
            *session.execute(select(ProfileSample.id, ProfileSample.audio_path)),
            *session.execute(select(Profile.id, Profile.avatar_path)),
            *session.execute(
                select(Generation.id, Generation.audio_path).where(Generation.status == "completed")
            ),
        ]
        # Any row still naming a file keeps it (a failed or adopted row may); only completed rows
        # are expected to have one, so only those are reported when it is missing.
        other_paths = set(
            session.scalars(
                select(Generation.audio_path).where(
                    Generation.status != "completed", Generation.audio_path.is_not(None)
                )
            )
        )
    for row_id, rel in rows:
        if not rel:
            continue
        referenced.add(rel)
        if not blobs.exists(rel):
            report.missing_files.append(f"{row_id}:{rel}")
    referenced |= other_paths
    now = time.time()
    seen = 0
    for top in ("profiles", "generations"):
        base = settings.data_dir / top
        if not base.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                seen += 1
                if limit is not None and seen > limit * 20:
                    report.truncated = True
                    return
                path = Path(dirpath) / name
                rel = path.relative_to(settings.data_dir).as_posix()
                if rel in referenced or not _old(path, grace, now):
                    continue
                report.orphans_seen.append(rel)
                if repair:
                    report.orphans_trashed.append(blobs.move_to_trash(rel))
