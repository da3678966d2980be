"""History search: Voicebox's "contains" (case-insensitive substring of the text or the profile name), indexed.

One meaning on both backends, two indexes (migration ``0005_history_fts``):

- SQLite: the FTS5 ``trigram`` table ``generations_fts`` (``detail='none'``). A term of three or more characters
  is asked as "every trigram of the term" — the rows that may contain it, a small superset — and those are
  re-checked with the ``LIKE`` the search always was, so the answer is exactly the scan's, found without
  reading every row. A shorter term has no trigram, so it falls back to the scan.
- PostgreSQL: ``ILIKE '%term%'`` as before; the ``pg_trgm`` GIN indexes make it an index lookup for three or
  more characters.

``%``, ``_`` and ``\\`` in a term are literal on both.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, and_, literal_column, or_, select, text
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
    trigrams = dict.fromkeys(term[i : i + 3] for i in range(len(term) - 2))
    query = " AND ".join('"' + t.replace('"', '""') + '"' for t in trigrams)
    candidates: Select[tuple[int]] = (
        select(literal_column("rowid"))
        .select_from(text("generations_fts"))
        .where(text("generations_fts MATCH :fts_query").bindparams(fts_query=query))
    )
    return and_(literal_column("generations.rowid").in_(candidates.scalar_subquery()), _scan(term))


def fts_problem(path: str) -> str | None:
    """Why the FTS index of a SQLite file disagrees with ``generations`` (``db check``), or None when it agrees
    or the file has none. FTS5 runs the check as a write statement that changes nothing: give it a private
    copy (the worker's local copy), never the shared file."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        has = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='generations_fts'"
        ).fetchone()
        if not has:
            return None
        conn.execute(
            "INSERT INTO generations_fts(generations_fts, rank) VALUES ('integrity-check', 1)"
        )
        return None
    except sqlite3.DatabaseError as exc:
        return f"the history search index is out of sync ({exc}); rebuild it with INSERT INTO generations_fts(generations_fts) VALUES ('rebuild')"
    finally:
        conn.close()
