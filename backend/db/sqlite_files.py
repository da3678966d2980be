"""SQLite file utilities: the version of a published file, opening it through FUSE renames, the engine on a
local copy, integrity and revision checks, and the stamped copy a publish writes.

Why apart from ``volume_db``: these work on one file and know nothing of leases or of the snapshot swap;
``VolumeDatabase`` (``backend.db.volume_db``), migrations, adoption, ``db copy`` and the CLI use them alike.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from backend.db.errors import DatabaseError

VersionKey = bytes
HEADER_BYTES = 100  # the SQLite header: what a published version is read from


def header_key(header: bytes) -> VersionKey:
    """The version of a published file, from its SQLite header: change counter, page count, user_version.

    Why content and not ``stat``: FUSE filesystems (MooseFS, bindfs) cache attributes for about a second, so a
    peer's freshly published file can still show the old inode, size and mtime — measured over two bindfs
    aliases, stat-based fencing lost acknowledged writes. Every publish stamps a fresh random ``user_version``
    (header bytes 60..63), and a fresh ``open()`` reads current content.
    """
    return bytes(header[24:32]) + bytes(header[60:64])


#: how often, and how far apart, a missing shared file is looked for again before it counts as missing
MISSING_RECHECKS = 5
MISSING_RECHECK_PAUSE = 0.02


def open_published(path: Path) -> BinaryIO:
    """Open the shared file for reading; a missing name is looked for again a few times first.

    Why the re-check: a FUSE filesystem built on libfuse's path API renames a target that someone has open to a
    hidden name before renaming the new file over it, so for a moment the name does not exist (measured over
    two bindfs aliases: a peer's publish made a writer refuse with "the volume database is missing"). A file
    that is really gone stays gone across the re-checks (``FileNotFoundError``); the ~0.2 s is paid only then.
    """
    for attempt in range(MISSING_RECHECKS - 1):
        try:
            return open(path, "rb")
        except FileNotFoundError:
            time.sleep(MISSING_RECHECK_PAUSE * (attempt + 1))
    return open(path, "rb")


def version_key(path: Path) -> VersionKey | None:
    """The published version of ``path``, or None when it is missing (after the re-checks of
    ``open_published``)."""
    try:
        with open_published(path) as handle:
            return header_key(handle.read(HEADER_BYTES))
    except FileNotFoundError:
        return None


def _configure_sqlite(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    mode = cursor.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    if str(mode).lower() != "delete":  # WAL must never be on: read the mode back, SQLite can refuse
        raise DatabaseError(f"SQLite refused journal_mode=DELETE (got {mode!r})")
    cursor.close()


def sqlite_engine(path: Path, vfs: str | None = None) -> Engine:
    """An engine on one local file: no pool (files are swapped underneath), FKs on, never WAL.

    ``vfs`` (``VOICEBOX_SQLITE_VFS``) picks another SQLite VFS: ``unix-none`` turns SQLite's own locking off,
    which the volume simulation uses to show the design does not rely on SQLite locks at all.
    """
    url = f"sqlite:///file:{path}?vfs={vfs}&uri=true" if vfs else f"sqlite:///{path}"
    engine = create_engine(url, poolclass=NullPool, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _configure_sqlite)
    return engine


def integrity_check(path: Path) -> str:
    """``ok`` or SQLite's first complaint; a file SQLite cannot read at all is reported, not raised."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"unreadable: {exc}"


def read_revision(path: Path) -> str | None:
    """The Alembic revision stored in a database file, or None when it has no version table."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone()
        if not has_table:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def backup_stamped(work_path: Path, tmp: Path) -> None:
    """The SQLite backup API into ``tmp``, stamped with a fresh random version (peers detect a new file by
    content, not by stat)."""
    src = sqlite3.connect(str(work_path))
    dst = sqlite3.connect(str(tmp))
    try:
        dst.execute("PRAGMA journal_mode=OFF")
        src.backup(dst)
        dst.execute(f"PRAGMA user_version={secrets.randbits(31) or 1}")
    finally:
        dst.close()
        src.close()
