"""The volume-wide write lease as the fence sees it: a held lease says why it is no longer ours, or None.

Why a type of its own: the fence (``VolumeDatabase._fence``) only needs that one question answered, so it takes
any ``WriteLease``; ``HeldLease`` answers it for the filelock lease ``VolumeDatabase.lease`` holds, and a test can
stand in a lease that never notices a takeover (broken client-local locks) without knowing how ours works.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # filelock is imported when a lease is taken
    from filelock import LeaseCompromise, SoftFileLease


class WriteLease(Protocol):
    def lost_reason(self, lease_path: Path) -> str | None:
        """Why the lease is no longer ours, checked now; None while it still is."""
        ...


class HeldLease:
    """The filelock lease of ``VolumeDatabase.lease``, with our own compromise flag: filelock keeps
    ``is_locked`` True after a takeover, so loss is tracked here (the heartbeat's report, the lease's own
    compromise, and the marker file still carrying our token)."""

    def __init__(self) -> None:
        self.lease: SoftFileLease | None = None
        self.token: str | None = None
        self.compromised: str | None = None

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
