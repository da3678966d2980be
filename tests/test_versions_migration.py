"""Migration 0004 (generation versions, effect presets, profile effects chains, stories): up and down on SQLite,
portable DDL for the other databases, and the backfill that gives every completed generation its version."""

from __future__ import annotations

import importlib.util
import io
import sqlite3
from pathlib import Path

import pytest

from migrations.runner import downgrade_file, schema_differences, upgrade_file

REV = "0004_versions_effects_stories"
PREVIOUS = "0003_settings_and_channels"
NEW_TABLES = {"generation_versions", "effect_presets", "stories", "story_items"}


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}


def test_0004_up_backfills_versions_and_seeds_presets_then_down_and_up_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "v.db"
    upgrade_file(db, PREVIOUS)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "insert into profiles (id, name, language, created_at, updated_at) "
            "values ('p1', 'Old', 'en', '2026-01-01', '2026-01-01')"
        )
        for gen_id, status, path in (
            ("g1", "completed", "generations/g1.wav"),
            ("g2", "failed", None),
        ):
            conn.execute(
                "insert into generations (id, profile_id, text, language, audio_path, engine, status, "
                "is_favorited, source, sha256, size_bytes, duration, created_at) values "
                "(?, 'p1', 'hi', 'en', ?, 'qwen', ?, 0, 'manual', 'ab', 10, 1.5, '2026-01-02')",
                (gen_id, path, status),
            )
    upgrade_file(db)
    assert schema_differences(db) == []
    with sqlite3.connect(db) as conn:
        versions = conn.execute(
            "select id, generation_id, label, audio_path, is_default, sha256, size_bytes, duration "
            "from generation_versions"
        ).fetchall()
        presets = conn.execute(
            "select name, is_builtin from effect_presets order by sort_order"
        ).fetchall()
        assert conn.execute("select effects_chain from profiles").fetchall() == [(None,)]
    assert versions == [("g1", "g1", "original", "generations/g1.wav", 1, "ab", 10, 1.5)]
    assert len(presets) == 9 and all(flag == 1 for _, flag in presets)
    assert presets[0][0] == "Robotic"

    downgrade_file(db, PREVIOUS)
    assert not _tables(db) & NEW_TABLES
    with sqlite3.connect(db) as conn:
        columns = {r[1] for r in conn.execute("pragma table_info(profiles)")}
        assert conn.execute("select name from profiles").fetchall() == [("Old",)]
        assert conn.execute("select count(*) from generations").fetchone() == (2,)
    assert "effects_chain" not in columns
    upgrade_file(db)
    assert _tables(db) >= NEW_TABLES


def test_presets_seeded_are_valid_chains() -> None:
    """The frozen built-ins of the migration pass today's validation (types and ranges)."""
    from backend.storage.effects import validate_chain

    module = _load_revision()
    for _id, name, _order, _description, chain in module.BUILTIN_PRESETS:
        assert validate_chain(chain), name


def _load_revision():  # type: ignore[no-untyped-def]
    path = Path(__file__).resolve().parents[1] / f"migrations/versions/{REV}.py"
    spec = importlib.util.spec_from_file_location("rev_0004", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_0004_is_portable_ddl(dialect: str) -> None:
    """The revision renders for PostgreSQL too (Alembic offline mode): no SQLite-only SQL."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    module = _load_revision()
    buf = io.StringIO()
    ctx = MigrationContext.configure(
        dialect_name=dialect, opts={"as_sql": True, "output_buffer": buf}
    )
    with Operations.context(ctx):
        module.upgrade()
        module.downgrade()
    sql = buf.getvalue()
    for table in NEW_TABLES:
        assert f"CREATE TABLE {table}" in sql and f"DROP TABLE {table}" in sql
    assert "INSERT INTO generation_versions" in sql and "INSERT INTO effect_presets" in sql
    assert "?" not in sql and "%(" not in sql
