"""Failures of the volume database that services and routes may need to tell apart."""

from __future__ import annotations

import errno


class DatabaseError(RuntimeError):
    """Base of every volume-database failure; the message is meant for a person."""


class LeaseTimeoutError(DatabaseError):
    """Another worker held the write lease for longer than this worker was willing to wait."""


class WriteConflictError(DatabaseError):
    """The fence failed before publish (lease lost or the shared file changed): nothing was published."""


class SchemaMismatchError(DatabaseError):
    """The shared database is at a revision this code does not know (a newer image wrote it)."""


class DatabaseCorruptError(DatabaseError):
    """The shared database file fails to open or fails ``integrity_check``."""


class VolumeError(DatabaseError):
    """The volume is missing, read-only or full: the worker cannot run on it."""


class VolumeFullError(VolumeError):
    """The volume has no space (ENOSPC/EDQUOT): nothing was written; free space or grow the volume."""


class VolumeReadOnlyError(VolumeError):
    """The volume refuses writes (EROFS/EACCES): nothing was written; reads may still work."""


class LibraryMissingError(DatabaseError):
    """The shared database is missing, empty or has no tables while the volume holds library data.

    Creating a fresh database there would publish an empty library over the real one (and let fsck trash its
    files as orphans), so every writer refuses and names the newest backup instead.
    """


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
READ_ONLY_ERRNOS = frozenset({errno.EROFS})
VOLUME_FULL_MESSAGE = (
    "the volume is full: nothing was written; free space or grow the volume, then retry"
)
VOLUME_READ_ONLY_MESSAGE = (
    "the volume is read-only: nothing was written; writes resume when it is writable"
)


def fault_from_message(message: str | None) -> VolumeError | None:
    """The fault a stored error message records (a failed generation's ``error``), or None."""
    if message == VOLUME_FULL_MESSAGE:
        return VolumeFullError(message)
    if message == VOLUME_READ_ONLY_MESSAGE:
        return VolumeReadOnlyError(message)
    return None


def volume_fault(exc: BaseException) -> VolumeError | None:
    """The volume fault behind an ``OSError`` or a SQLite error, or None for anything else.

    The message never carries a path (it may reach an HTTP answer): the full or read-only volume is the news.
    """
    code = getattr(exc, "errno", None)
    text = str(exc).lower()
    if code in FULL_ERRNOS or "database or disk is full" in text:
        return VolumeFullError(VOLUME_FULL_MESSAGE)
    if code in READ_ONLY_ERRNOS or "readonly database" in text or "read-only file system" in text:
        return VolumeReadOnlyError(VOLUME_READ_ONLY_MESSAGE)
    return None


class DatabaseUnavailableError(DatabaseError):
    """The PostgreSQL server cannot be reached, refused the login, or dropped the connection mid-unit.

    Nothing of the unit was committed (the server rolls back a transaction whose connection is gone); the
    message names the server without its password, and the API answers 503 with ``Retry-After``.
    """
