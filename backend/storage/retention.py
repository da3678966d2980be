"""Retention of ``voicebox/exports/``: answers spilled past the RunPod size budget, library exports.

Why: every spilled answer (and every refused-but-large one) used to stay on the volume forever. Files older than
``VOICEBOX_EXPORT_TTL_HOURS`` (default 24; 0 keeps everything) are removed by ``volume fsck`` at boot and every
``EXPIRY_INTERVAL_SECONDS`` while the app runs.

Never a file a job is still answering with: a job writes its spill (temp file → ``os.replace``) and answers
within ``VOICEBOX_JOB_TIMEOUT_SECONDS``; the caller then fetches it (``GET /exports/{name}``) while RunPod keeps
the job's result (30 minutes for ``/run``). A file is therefore kept, whatever the TTL, until
``job_timeout_seconds + ANSWER_GRACE_SECONDS`` have passed since it was written -- a rule every worker on the
volume can apply without knowing its peers' jobs. Links and folders in ``exports/`` are left alone.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import dataclass, field

from backend.config import Settings

__all__ = ["ANSWER_GRACE_SECONDS", "EXPIRY_INTERVAL_SECONDS", "ExportExpiry", "expire_exports"]

log = logging.getLogger("voicebox.retention")

#: how long after a job could have ended its spilled answer is still fetched (RunPod keeps /run results 30 min)
ANSWER_GRACE_SECONDS = 3600.0
#: how often a running app applies the retention
EXPIRY_INTERVAL_SECONDS = 3600.0


@dataclass
class ExportExpiry:
    removed: list[str] = field(default_factory=list)
    kept: int = 0
    truncated: bool = False


def expire_exports(
    settings: Settings, *, now: float | None = None, limit: int | None = None
) -> ExportExpiry:
    """Remove regular files in ``voicebox/exports/`` older than the retention; ``limit`` bounds the work."""
    report = ExportExpiry()
    ttl = settings.export_ttl_hours * 3600.0
    folder = settings.exports_dir
    if ttl <= 0 or not folder.is_dir() or folder.is_symlink():
        return report
    keep_for = max(ttl, settings.job_timeout_seconds + ANSWER_GRACE_SECONDS)
    now = time.time() if now is None else now
    with os.scandir(folder) as entries:
        for entry in entries:
            if limit is not None and len(report.removed) >= limit:
                report.truncated = True
                break
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime <= keep_for:
                report.kept += 1
                continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue  # a peer removed it first
            report.removed.append(entry.name)
    if report.removed:
        log.info("removed %d expired export(s) from voicebox/exports/", len(report.removed))
    return report
