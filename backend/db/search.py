"""History search: Voicebox's "contains" (case-insensitive substring of the text or the profile name), indexed.

One meaning on both backends, two indexes (migration ``0005_history_fts``):

- SQLite: the FTS5 ``trigram`` table ``generations_fts``. A term of three or more characters is asked as one
  phrase, which matches exactly the rows whose text or profile name contains it (trigram phrases are
  substrings; case folded). A shorter term has no trigram, so it falls back to the ``LIKE`` scan it always was.
- PostgreSQL: ``ILIKE '%term%'`` as before; the ``pg_trgm`` GIN indexes make it an index lookup for three or
  more characters.

``%``, ``_`` and ``\\`` in a term are literal on both.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, literal_column, or_, select, text
from sqlalchemy.orm import Session

from backend.db.models import Generation

#: the shortest term the trigram indexes can answer
MIN_INDEXED_CHARS = 3


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _scan(term: str) -> ColumnElement[bool]:
    pattern = f"%{escape_like(term)}%"
    return or_(
        Generation.text.ilike(pattern, escape="\\"),
        Generation.profile_name.ilike(pattern, escape="\\"),
    )


def _has_fts(session: Session) -> bool:
    return (
        session.execute(
            text("SELECT 1 FROM sqlite_master WHERE type='table' AND name='generations_fts'")
        ).first()
        is not None
    )


def contains(session: Session, term: str) -> ColumnElement[bool]:
    """A filter on ``Generation`` for rows whose text or profile name contains ``term``."""
    dialect = session.get_bind().dialect.name
    if dialect != "sqlite" or len(term) < MIN_INDEXED_CHARS or not _has_fts(session):
        return _scan(term)
    phrase = '"' + term.replace('"', '""') + '"'
    matches = (
        select(literal_column("rowid"))
        .select_from(text("generations_fts"))
        .where(text("generations_fts MATCH :fts_phrase").bindparams(fts_phrase=phrase))
    )
    return literal_column("generations.rowid").in_(matches.scalar_subquery())
