"""Which database a worker uses, chosen once from the settings.

Its own module so that the interface the backends implement does not import the backends (no cycle in
``backend.db``); the backends are imported lazily, so a worker on the volume's SQLite never loads psycopg.
"""

from __future__ import annotations

from backend.config import Settings
from backend.db.interface import Database


def open_database(settings: Settings, *, expected_revision: str | None) -> Database:
    """The backend the settings name: PostgreSQL when ``VOICEBOX_DATABASE_URL`` is set, else the volume file."""
    if settings.database_url:
        from backend.db.postgres import PostgresDatabase

        return PostgresDatabase(settings, expected_revision=expected_revision)
    from backend.db.volume_db import VolumeDatabase

    return VolumeDatabase(settings, expected_revision=expected_revision)
