"""The database on a PostgreSQL server (``VOICEBOX_DATABASE_URL``): ordinary transactions and row locks.

Why this shape: on the volume every write copies the whole SQLite file under one volume-wide lease, so its cost
grows with the library and every writer of the endpoint queues on that lease. A server database commits only
what changed and lets writers run side by side. Write units run ``SERIALIZABLE``: the same guarantee the single
lease holder gives on the volume (a unit sees the database as if it ran alone), and a unit that lost a race is
rolled back by the server and reported as ``WriteConflictError``, which ``write_retrying`` runs again.

Faults: a refused connection, a failed login or a connection dropped mid-unit becomes
``DatabaseUnavailableError`` (the API answers 503 with ``Retry-After``); the server rolls back whatever the unit
had done, so nothing is half-written, and the pool reconnects when the server is back. No message ever carries
the URL's password.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session

from backend.config import Settings, redact_url
from backend.db.errors import (
    DatabaseError,
    DatabaseUnavailableError,
    SchemaMismatchError,
    WriteConflictError,
)
from backend.db.interface import DatabaseKind

log = logging.getLogger(__name__)

#: SQLSTATEs of a unit that lost a race: serialization failure, deadlock (run it again)
CONFLICT_STATES = frozenset({"40001", "40P01"})
#: SQLSTATE classes of a server that is not usable now: connection exceptions, insufficient resources,
#: operator intervention (shutdown), invalid authorization
UNAVAILABLE_CLASSES = ("08", "53", "57", "28")


def pg_engine(settings: Settings, *, pool: bool = True) -> Engine:
    """An engine on ``settings.database_url``: a bounded pool, checked connections, a connect timeout."""
    url = settings.database_url
    if not url:
        raise DatabaseError("VOICEBOX_DATABASE_URL is not set")
    kwargs: dict[str, object] = {
        "pool_pre_ping": True,
        "connect_args": {
            "connect_timeout": max(1, int(settings.db_connect_timeout)),
            "application_name": f"voicebox-worker {settings.worker_id}"[:63],
        },
        "hide_parameters": True,
    }
    if pool:
        kwargs.update(pool_size=settings.db_pool_size, max_overflow=settings.db_pool_size)
        kwargs["pool_timeout"] = settings.db_connect_timeout
    else:
        from sqlalchemy.pool import NullPool

        kwargs["poolclass"] = NullPool
    return create_engine(url, **kwargs)


def translate(exc: BaseException, where: str) -> DatabaseError | None:
    """The ``DatabaseError`` a driver failure means, or None when it is not a server or race problem.

    The message is the server's first line (psycopg never puts the password in it) with the server named by
    ``where`` (already redacted); anything that looks like the URL's password is cut out all the same.
    """
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    state = getattr(orig, "sqlstate", None) or ""
    first = (str(orig).strip().splitlines() or ["no detail"])[0][:300]
    if state in CONFLICT_STATES:
        return WriteConflictError(f"write not committed: it raced another writer ({first}); retry")
    unavailable = exc.connection_invalidated or state.startswith(UNAVAILABLE_CLASSES)
    if not state and type(orig).__name__ in {"OperationalError", "InterfaceError"}:
        unavailable = True  # a connect failure carries no SQLSTATE
    if unavailable:
        return DatabaseUnavailableError(
            f"the database {where} is unavailable: {first}; nothing was written — retry"
        )
    return None


class PostgresDatabase:
    """``Database`` on PostgreSQL; one engine (a pool of ``VOICEBOX_DB_POOL_SIZE``) per worker."""

    kind = DatabaseKind.POSTGRESQL
    conflict_retries = 12

    def __init__(self, settings: Settings, *, expected_revision: str | None = None) -> None:
        self.settings = settings
        self.expected_revision = expected_revision
        self.last_volume_fault: tuple[float, str] | None = None
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = pg_engine(self.settings)
        return self._engine

    def describe(self) -> str:
        return redact_url(self.settings.database_url or "")

    def _where(self) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.settings.database_url or "")
        return f"postgresql://{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:
            mapped = translate(exc, self._where())
            if mapped is None:
                raise
            if isinstance(mapped, DatabaseUnavailableError):
                log.warning("%s", mapped)
            raise mapped from None

    # ---------------------------------------------------------------- reads
    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._translated():
            session = Session(self.engine, expire_on_commit=False)
            try:
                yield session
            finally:
                session.close()

    # ---------------------------------------------------------------- writes
    @contextmanager
    def write(self) -> Iterator[Session]:
        """One ``SERIALIZABLE`` transaction: checked revision, commit on a clean exit, rollback otherwise."""
        with self._translated():
            conn = self.engine.connect().execution_options(isolation_level="SERIALIZABLE")
            try:
                session = Session(bind=conn, expire_on_commit=False)
                try:
                    self._check_schema(session.connection())
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
                finally:
                    session.close()
            finally:
                conn.close()

    def _check_schema(self, conn: Connection) -> None:
        if self.expected_revision is None:
            return
        found = revision_of(conn)
        if found != self.expected_revision:
            raise SchemaMismatchError(
                f"the database is at revision {found!r} but this worker's code expects "
                f"{self.expected_revision!r}; "
                + (
                    "it was migrated by a newer image — this worker will not write to it"
                    if found is not None
                    else "it has no revision — run `voicebox-worker bootstrap`"
                )
            )

    # ---------------------------------------------------------------- misc
    def current_revision(self) -> str | None:
        with self._translated(), self.engine.connect() as conn:
            return revision_of(conn)

    def scalar(self, sql: str) -> object:
        with self.read() as session:
            return session.execute(text(sql)).scalar()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def revision_of(conn: Connection) -> str | None:
    """The Alembic revision stored on the server, or None when it has no version table (yet)."""
    exists = conn.execute(text("SELECT to_regclass('alembic_version')")).scalar()
    if exists is None:
        return None
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except ProgrammingError:
        return None
