"""Full-text history search: an index that answers Voicebox's "contains" search without scanning every row.

The app's search is a case-insensitive substring match on a generation's text or profile name. Both indexes
keep exactly that meaning:

- SQLite: an FTS5 table with the ``trigram`` tokenizer over ``generations.text`` and ``profile_name``
  (external content: it stores only the index, the text stays in ``generations``; ``detail='none'``: which
  rows hold a trigram, not where — measured, a quarter of the size of the full index, about as large as the
  text itself), kept in sync by three triggers and filled from the existing rows here. A term of three or more
  characters is looked up as "every one of its trigrams" (a small superset) and re-checked with the ``LIKE``
  it always was, so the answer is exactly the old one; shorter terms fall back to the plain scan.
- PostgreSQL: ``pg_trgm`` GIN indexes on the same two columns; the service's ``ILIKE '%term%'`` uses them as is.

A later revision that recreates ``generations`` on SQLite (batch mode) drops these triggers with the table: it
must create them again and run the FTS ``rebuild`` (``db check`` reports an index out of sync).

Revision ID: 0005_history_fts
Revises: 0004_versions_effects_stories
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0005_history_fts"
down_revision = "0004_versions_effects_stories"
branch_labels = None
depends_on = None

SQLITE_UP = (
    "CREATE VIRTUAL TABLE generations_fts USING fts5("
    "text, profile_name, content='generations', content_rowid='rowid', tokenize='trigram', "
    "detail='none')",
    "CREATE TRIGGER generations_fts_insert AFTER INSERT ON generations BEGIN "
    "INSERT INTO generations_fts(rowid, text, profile_name) "
    "VALUES (new.rowid, new.text, new.profile_name); END",
    "CREATE TRIGGER generations_fts_delete AFTER DELETE ON generations BEGIN "
    "INSERT INTO generations_fts(generations_fts, rowid, text, profile_name) "
    "VALUES ('delete', old.rowid, old.text, old.profile_name); END",
    "CREATE TRIGGER generations_fts_update AFTER UPDATE OF text, profile_name ON generations BEGIN "
    "INSERT INTO generations_fts(generations_fts, rowid, text, profile_name) "
    "VALUES ('delete', old.rowid, old.text, old.profile_name); "
    "INSERT INTO generations_fts(rowid, text, profile_name) "
    "VALUES (new.rowid, new.text, new.profile_name); END",
    "INSERT INTO generations_fts(generations_fts) VALUES ('rebuild')",
)
SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS generations_fts_update",
    "DROP TRIGGER IF EXISTS generations_fts_delete",
    "DROP TRIGGER IF EXISTS generations_fts_insert",
    "DROP TABLE IF EXISTS generations_fts",
)
POSTGRES_UP = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_generations_text_trgm ON generations USING gin (text gin_trgm_ops)",
    "CREATE INDEX ix_generations_profile_name_trgm ON generations "
    "USING gin (profile_name gin_trgm_ops)",
)
POSTGRES_DOWN = (
    "DROP INDEX IF EXISTS ix_generations_profile_name_trgm",
    "DROP INDEX IF EXISTS ix_generations_text_trgm",
)


def _statements(up: bool) -> tuple[str, ...]:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        return SQLITE_UP if up else SQLITE_DOWN
    if dialect == "postgresql":
        return POSTGRES_UP if up else POSTGRES_DOWN
    return ()  # another database: search keeps the plain scan


def upgrade() -> None:
    for statement in _statements(True):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(False):
        op.execute(statement)
