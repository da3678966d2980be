"""The volume-wide write lease as the fence sees it: a held lease says why it is no longer ours, or None.

Why a type of its own: the fence (``VolumeDatabase._fence``) only needs that one question answered, so it takes
any ``WriteLease``; ``HeldLease`` answers it for the filelock lease ``VolumeDatabase.lease`` holds, and a test can
stand in a lease that never notices a takeover (broken client-local locks) without knowing how ours works.
``acquire_write_lease`` takes it, breaking a dead holder's marker (``backend.db.lease_recovery``) on the way.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from backend.db.errors import LeaseTimeoutError
from backend.db.lease_recovery import StaleMarkerBreaker

if TYPE_CHECKING:  # filelock is imported when a lease is taken
    from filelock import LeaseCompromise, SoftFileLease


class WriteLease(Protocol):
    def lost_reason(self, lease_path: Path) -> str | None:
        """Why the lease is no longer ours, checked now; None while it still is."""
        ...


class HeldLease:
    """The filelock lease ``acquire_write_lease`` takes for ``VolumeDatabase.lease``, with our own compromise flag: filelock keeps
    ``is_locked`` True after a takeover, so loss is tracked here (the heartbeat's report, the lease's own
    compromise, and the marker file still carrying our token)."""

    def __init__(self) -> None:
        self.lease: SoftFileLease | None = None
        self.token: str | None = None
        self.compromised: str | None = None

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()

    def mark_compromised(self, compromise: LeaseCompromise) -> None:
        self.compromised = str(compromise.reason)

    def lost_reason(self, lease_path: Path) -> str | None:
        """Why the lease is no longer ours, checked now (the heartbeat may not have noticed a pause yet)."""
        if self.compromised:
            return f"the lease was lost ({self.compromised})"
        lease = self.lease
        if lease is None:
            return "the lease is not held"
        if lease.compromise is not None:
            return f"the lease was lost ({lease.compromise.reason})"
        token = self.token
        try:
            marker = lease_path.read_text(errors="replace")
        except OSError:
            return "the lease marker is gone"
        if not token or token not in marker:
            return "another worker took the lease over"
        return None


def acquire_write_lease(lease_path: Path, lease_seconds: float, timeout: float) -> HeldLease:
    """Take the volume-wide write lease (release it with ``HeldLease.release``); a killed holder is taken over
    after ``lease_seconds``, and ``LeaseTimeoutError`` says so when it stayed busy for ``timeout`` seconds.

    An ``OSError`` (a full or read-only volume) is raised as is: the caller names the volume fault.
    """
    from filelock import SoftFileLease, Timeout

    held = HeldLease()
    lease = SoftFileLease(
        str(lease_path), lease_duration=lease_seconds, on_compromise=held.mark_compromised
    )
    # Polled in slices so a dead holder's marker is broken as soon as it is judged stale, not after one
    # more full lease period of waiting; the breaker works where filelock's own takeover cannot (FUSE, NFS).
    breaker = StaleMarkerBreaker(lease_path, lease_seconds)
    step = max(0.25, min(1.0, lease_seconds / 4))
    deadline = time.monotonic() + timeout
    lease_path.parent.mkdir(parents=True, exist_ok=True)
    breaker.poll()
    while True:
        remaining = deadline - time.monotonic()
        try:
            lease.acquire(timeout=max(0.0, min(remaining, step)))
            break
        except Timeout:
            if breaker.poll() is not None or time.monotonic() < deadline:
                continue
            raise LeaseTimeoutError(
                f"the database lease ({lease_path.name}) stayed busy for "
                f"{timeout:g} s; another worker is writing — retry"
            ) from None
    held.lease = lease
    held.token = lease.token
    return held
