"""The volume's folders, a writability probe, and what filesystem the volume is.

Why probe before creating anything: a read-only or full volume must stop the cold start with one clear line and
leave nothing half-created; a missing volume must not be silently replaced by an empty folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path

from backend.config import Settings
from backend.db.errors import VolumeError
from backend.storage.mounts import MountInfo as MountInfo
from backend.storage.mounts import mount_info as mount_info

LAYOUT = (
    "voicebox",
    "voicebox/db",
    "voicebox/db/backups",
    "voicebox/profiles",
    "voicebox/generations",
    "voicebox/cache",
    "voicebox/cache/prompts",
    "voicebox/exports",
    "voicebox/imports",
    "voicebox/.tmp",
    "voicebox/trash",
    "huggingface",
)


def _explain(exc: OSError, volume: Path) -> str:
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"the volume {volume} is read-only or not writable ({exc.strerror})"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the volume {volume} is full ({exc.strerror}); free space or grow the volume"
    return f"the volume {volume} cannot be written ({exc.strerror or exc})"


def probe_writable(volume: Path) -> None:
    """Exclusive-create, fsync, rename and unlink one small file at the volume root."""
    name = f".voicebox-probe-{uuid.uuid4().hex}"
    first, second = volume / name, volume / f"{name}.renamed"
    try:
        fd = os.open(first, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(first, second)
    except OSError as exc:
        raise VolumeError(_explain(exc, volume)) from exc
    finally:
        # On a read-only volume even removing a file that was never made raises EROFS: that must not hide
        # the one-line verdict above behind a traceback.
        for leftover in (first, second):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)


def ensure_layout(settings: Settings) -> list[str]:
    """Create missing folders; returns those it created (empty on a ready volume: idempotent)."""
    volume = settings.volume
    if not volume.is_dir():
        if settings.volume_source.startswith("local stand-in"):
            volume.mkdir(parents=True, exist_ok=True)
        else:
            raise VolumeError(
                f"the volume {volume} ({settings.volume_source}) does not exist; attach a network volume "
                "to the endpoint or set VOICEBOX_VOLUME to an existing folder"
            )
    probe_writable(volume)
    created = []
    try:
        for rel in LAYOUT:
            path = volume / rel
            if not path.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                created.append(rel)
    except OSError as exc:
        raise VolumeError(_explain(exc, volume)) from exc
    return created
