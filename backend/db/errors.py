"""Failures of the volume database that services and routes may need to tell apart."""

from __future__ import annotations


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
