"""Taking the write lease back from a holder that is gone, on any filesystem.

filelock's soft lease recovers a dead holder's marker by exchanging names atomically (``renameat2`` with
``RENAME_EXCHANGE``). Filesystems that refuse that call — FUSE mounts such as bindfs, NFS, some network volumes —
answer EINVAL, and filelock then leaves the marker where it is: a worker killed while it held the lease wedges every
writer of the volume for good (measured on two bindfs aliases: the marker of a SIGKILLed holder stayed for minutes
and every write waited out its timeout with a 503).

This module breaks such a marker itself, with a plain ``rename`` that every filesystem has, when one of three things
is true:

- it has no owner record and is older than the lease (a worker died between creating it and writing the record);
- its record names a process on this host that no longer runs;
- it has not changed for a whole lease period as seen by this contender's own monotonic clock (the holder's
  heartbeat refreshes it a few times per period, so a live holder never looks like this; no wall clocks of
  different hosts are compared).

Breaking is safe because it is never what keeps two writers apart: a holder whose marker was taken away fails its
fence (the token in the marker is checked before anything is published) and publishes nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: markers are a few hundred bytes; anything larger is read only for its first page
MARKER_READ_LIMIT = 4096


@dataclass(frozen=True)
class MarkerRecord:
    """What a lease marker says about its holder (all ``None`` when it has no owner record yet)."""

    pid: int | None
    host: str | None
    token: str | None

    @classmethod
    def parse(cls, content: bytes) -> MarkerRecord:
        fields: dict[str, str] = {}
        for line in content.decode("utf-8", errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip()
        pid_text = fields.get("pid", "")
        return cls(
            pid=int(pid_text) if pid_text.isdigit() else None,
            host=fields.get("host") or None,
            token=fields.get("token") or None,
        )


def process_is_gone(pid: int) -> bool:
    """True when no process ``pid`` runs on this host (a zombie counts as gone: it holds nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"


class StaleMarkerBreaker:
    """Watches one lease marker across polls and breaks it when its holder is gone (see the module doc).

    One instance per acquisition attempt: what it remembers is how long *this* contender has seen the marker
    unchanged.
    """

    def __init__(
        self,
        marker: Path,
        lease_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        host: str | None = None,
    ) -> None:
        self.marker = marker
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._host = host or socket.gethostname()
        self._seen: tuple[int, int, int, int] | None = None
        self._seen_since = 0.0

    def poll(self) -> str | None:
        """Break the marker if its holder is gone; returns why it was broken, or None when it was left."""
        try:
            st = os.stat(self.marker)
            with open(self.marker, "rb") as handle:
                content = handle.read(MARKER_READ_LIMIT)
        except FileNotFoundError:
            self._seen = None
            return None
        identity = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        now = self._clock()
        if identity != self._seen:
            self._seen, self._seen_since = identity, now
        unchanged_for = now - self._seen_since
        reason = self._stale_reason(MarkerRecord.parse(content), st, unchanged_for)
        if reason is None or not self._move_aside(identity):
            return None
        self._seen = None
        log.warning("broke the write lease marker: %s", reason)
        return reason

    def _stale_reason(
        self, record: MarkerRecord, st: os.stat_result, unchanged_for: float
    ) -> str | None:
        if record.token is None:
            # A peer may be writing its owner record right now: only an old record-less marker is abandoned.
            if (
                time.time() - st.st_mtime >= self.lease_seconds
                or unchanged_for >= self.lease_seconds
            ):
                return "it has no owner record (a worker died creating it)"
            return None
        if record.host == self._host and record.pid is not None and process_is_gone(record.pid):
            return f"its holder (pid {record.pid} on this host) is gone"
        if unchanged_for >= self.lease_seconds:
            return f"its holder has not renewed it for {unchanged_for:.1f} s"
        return None

    def _move_aside(self, identity: tuple[int, int, int, int]) -> bool:
        """Rename the marker away if it is still the one judged stale; a racing new holder keeps its marker
        unless the rename lands between the check and the call, in which case its fence refuses its publish."""
        try:
            st = os.stat(self.marker)
        except FileNotFoundError:
            return False
        if (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size) != identity:
            return False
        aside = self.marker.with_name(f"{self.marker.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.marker, aside)
        except FileNotFoundError:
            return False
        aside.unlink(missing_ok=True)
        return True
