"""The one interface services use for the database, whichever backend is behind it.

Two implementations, picked once from the settings by ``backend.db.factory.open_database``: ``VolumeDatabase`` (the volume's
SQLite file, leased snapshot swap; the default) and ``PostgresDatabase`` (``VOICEBOX_DATABASE_URL``, ordinary
transactions and row locks). Services see only this Protocol: ``read()`` for a session whose loaded rows stay
readable after it closes, ``write()`` for one unit of work that commits on a clean exit and leaves nothing behind
when it raises, and ``WriteConflictError`` when a unit lost a race and may simply be run again
(``write_retrying`` in the services does that).
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar, runtime_checkable

from sqlalchemy.orm import Session

from backend.config import Settings
from backend.db.errors import WriteConflictError

T = TypeVar("T")


class DatabaseKind(enum.StrEnum):
    SQLITE_VOLUME = "sqlite-volume"
    POSTGRESQL = "postgresql"


@runtime_checkable
class Database(Protocol):
    """Read sessions, write units of work and the schema revision, on either backend."""

    settings: Settings
    expected_revision: str | None
    #: (monotonic time, "volume full" | "volume read-only") of the last write that hit one; None on PostgreSQL
    last_volume_fault: tuple[float, str] | None
    #: how often a unit that lost a race is run again: the volume's lease makes races rare (a fence failure),
    #: PostgreSQL's ``SERIALIZABLE`` units race whenever two writers touch the same rows or names
    conflict_retries: int

    @property
    def kind(self) -> DatabaseKind: ...

    def read(self) -> AbstractContextManager[Session]:
        """A session for reads; rows loaded in it stay readable (detached) after it closes."""
        ...

    def write(self) -> AbstractContextManager[Session]:
        """One unit of work: committed on a clean exit, nothing kept when the body raises.

        Raises ``WriteConflictError`` when the unit lost a race with another writer (run it again),
        ``SchemaMismatchError`` when the database is not at ``expected_revision``.
        """
        ...

    def current_revision(self) -> str | None:
        """The Alembic revision of the database now (fresh from the source of truth)."""
        ...

    def describe(self) -> str:
        """Where the database is, safe to log and answer (no password)."""
        ...

    def scalar(self, sql: str) -> object: ...

    def close(self) -> None: ...


def conflict_pause(attempt: int) -> None:
    """A random wait before running a unit that lost a race again, doubling with each attempt (10 ms, 20 ms,
    ... at most 300 ms), so the writers that collided spread out instead of colliding again in lockstep."""
    time.sleep(random.uniform(0.5, 1.5) * min(0.3, 0.01 * 2**attempt))


def run_retrying(
    attempt: Callable[[], T], retries: int, *, before_retry: Callable[[], bool] | None = None
) -> T:
    """Call ``attempt``; when it lost a race (``WriteConflictError``) call it again, at most ``retries`` more
    times, each after a ``conflict_pause``. The one retry policy: plain units, a generation's start and an
    import's commit all go through here.

    ``before_retry`` runs before each new try (an import puts its moved files back); when it answers False
    the conflict is raised instead.
    """
    for tries in range(retries + 1):
        try:
            return attempt()
        except WriteConflictError:
            if tries >= retries or (before_retry is not None and not before_retry()):
                raise
            conflict_pause(tries)
    raise AssertionError("unreachable")


def write_retrying(db: Database, fn: Callable[[Session], T], *, retries: int | None = None) -> T:
    """Run ``fn`` in one write unit; when it lost a race (``WriteConflictError``) run it again.

    ``fn`` must decide everything from the session it gets (it is re-run on fresh data), and must not touch
    files: a retried unit has to be free of side effects outside the database. ``retries`` defaults to the
    backend's ``conflict_retries``.
    """

    def unit() -> T:
        with db.write() as session:
            return fn(session)

    return run_retrying(unit, db.conflict_retries if retries is None else retries)
