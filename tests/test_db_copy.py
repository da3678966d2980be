"""``db copy``'s notion of a non-empty target and its checksums, on SQLite alone (the round trip through a real
PostgreSQL server is in tests/test_postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from backend.db.copy import digests, library_rows
from backend.db.models import Base, EffectPreset, Story


@pytest.fixture
def conn() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def test_seeded_rows_are_not_a_library_but_a_story_or_a_preset_of_ones_own_is(
    conn: Connection,
) -> None:
    session = Session(bind=conn)
    session.add(EffectPreset(name="Radio", effects_chain="[]", is_builtin=True))
    session.flush()
    assert library_rows(conn) == 0  # what a fresh migration seeds does not make a target non-empty
    session.add(EffectPreset(name="Mine", effects_chain="[]", is_builtin=False))
    session.flush()
    assert library_rows(conn) == 1
    session.add(Story(name="Saga"))
    session.flush()
    assert library_rows(conn) == 2


def test_every_table_of_the_models_is_checksummed(conn: Connection) -> None:
    found = digests(conn)
    assert set(found) == set(Base.metadata.tables)
    assert {"generation_versions", "effect_presets", "stories", "story_items"} <= set(found)
