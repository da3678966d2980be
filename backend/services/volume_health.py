"""Why ``/health`` says ``degraded``: the volume full or read-only, the shared database missing, empty or
unreadable, the write lease unreachable. Cheap on purpose (a ``statvfs``, two ``stat`` calls, one 100-byte read,
and a recent fault this worker saw), because RunPod and UIs poll health often.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from backend.db.backups import database_state
from backend.db.interface import DatabaseKind

if TYPE_CHECKING:
    from backend.db.interface import Database

#: below this much free space (or 5 % of a smaller volume) the volume counts as full: a publish needs a whole
#: copy of the database
MIN_FREE_BYTES = 64 * 1024 * 1024
#: a write that hit ENOSPC/EROFS this recently keeps health degraded even if statvfs looks fine (quotas)
RECENT_FAULT_SECONDS = 60.0


def volume_reasons(db: Database) -> list[str]:
    """Every reason the worker cannot serve writes right now; empty when it can.

    On PostgreSQL the volume holds only audio: the shared file and the lease are not looked at (the server's
    reachability is reported by ``health_info`` from the revision read).
    """
    settings = db.settings
    reasons: list[str] = []
    try:
        vfs = os.statvfs(settings.volume)
        if vfs.f_flag & os.ST_RDONLY:
            reasons.append("volume read-only")
        elif vfs.f_bavail * vfs.f_frsize < min(MIN_FREE_BYTES, vfs.f_blocks * vfs.f_frsize // 20):
            reasons.append("volume full")
    except OSError:
        reasons.append("volume unreachable")
    fault = db.last_volume_fault
    recent = fault is not None and time.monotonic() - fault[0] < RECENT_FAULT_SECONDS
    if fault is not None and recent and fault[1] not in reasons:
        reasons.append(fault[1])
    if db.kind is DatabaseKind.POSTGRESQL:
        return reasons
    try:
        state = database_state(settings.db_path)
    except OSError:
        state = "unreadable"
    if state is not None:
        reasons.append(f"database {state}")
    try:
        marker = os.stat(settings.lease_path)
        stuck = time.time() - marker.st_mtime > settings.lease_timeout + settings.lease_seconds
        if stuck and marker.st_size > 0:
            reasons.append("lease unreachable (held past the lease timeout)")
    except FileNotFoundError:
        pass
    except OSError:
        reasons.append("lease unreachable")
    return reasons
