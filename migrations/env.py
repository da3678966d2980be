"""Alembic environment, run from code: the caller passes an open connection in ``config.attributes``.

Why no alembic.ini at run time: the worker migrates a private work copy of the volume database under the lease
(``volume_bootstrap.migrate``, through ``migrations/runner.py``); the connection it opens already issues
``BEGIN IMMEDIATE`` so the whole upgrade is one transaction — a kill mid-migration rolls back instead of leaving
a half-migrated file.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from backend.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:  # developers: `alembic -x url=sqlite:///path.db upgrade head`
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("pass -x url=sqlite:///path/to/voicebox.db")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
