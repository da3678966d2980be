"""Reading the legacy database: which tables and columns it has, which known Voicebox schema it is, its rows.

Why refuse early: a partial or foreign schema would be "adopted" into an empty history; nothing is written
before ``inspect_legacy`` has recognised the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from volume_bootstrap.adopt.errors import AdoptionError, LegacySchemaError

CORE_TABLES = ("profiles", "profile_samples", "generations")


REQUIRED_COLUMNS: dict[str, set[str]] = {
    "profiles": {"id", "name"},
    "profile_samples": {"id", "profile_id", "audio_path", "reference_text"},
    "generations": {"id", "profile_id", "text"},
}


KNOWN_LEGACY_TABLES = {
    *CORE_TABLES,
    "generation_jobs",
    "generation_versions",
    "stories",
    "story_items",
    "projects",
    "audio_channels",
    "channel_device_mappings",
    "profile_channel_mappings",
    "effect_presets",
    "capture_settings",
    "generation_settings",
    "mcp_client_bindings",
    "captures",
}


UPSTREAM_TABLES = {
    "generation_versions",
    "effect_presets",
    "capture_settings",
    "generation_settings",
    "mcp_client_bindings",
    "captures",
}


UPSTREAM_PROFILE_COLUMNS = {
    "effects_chain",
    "voice_type",
    "preset_engine",
    "preset_voice_id",
    "design_prompt",
    "default_engine",
    "personality",
}


Query = Callable[[str], list[dict[str, Any]]]


@dataclass
class LegacyLayout:
    """What is in the legacy file: tables with their columns, and which known schema it is."""

    columns: dict[str, list[str]]
    schema: str
    objects: list[str]  # views, triggers, indexes that go with the legacy tables


def inspect_legacy(query: Query) -> LegacyLayout:
    """Recognise the schema or refuse: a partial schema must not be "adopted" into an empty history."""
    master = query(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    )
    tables = [row["name"] for row in master if row["type"] == "table"]
    objects = [f"{row['type']}:{row['name']}" for row in master if row["type"] != "table"]
    if "alembic_version" in tables:
        raise AdoptionError(
            "the database has an alembic_version table: it is a voicebox-worker database, not a legacy "
            "Voicebox one — use `voicebox-worker db restore` or `db upgrade` instead"
        )
    present = [t for t in CORE_TABLES if t in tables]
    if len(present) < len(CORE_TABLES):
        missing = [t for t in CORE_TABLES if t not in tables]
        known = sorted(set(tables) & KNOWN_LEGACY_TABLES)
        if not known:
            raise LegacySchemaError(
                f"not a Voicebox database (tables: {', '.join(sorted(tables)) or 'none'}); "
                "nothing was adopted"
            )
        raise LegacySchemaError(
            f"partial Voicebox schema: it has {', '.join(known)} but no {', '.join(missing)}; refusing "
            "to adopt it (rows would be lost) — restore a complete voicebox.db and retry"
        )
    columns = {t: [row["name"] for row in query(f'PRAGMA table_info("{t}")')] for t in tables}
    for table, required in REQUIRED_COLUMNS.items():
        lacking = sorted(required - set(columns[table]))
        if lacking:
            raise LegacySchemaError(
                f"partial Voicebox schema: {table} lacks column(s) {', '.join(lacking)}; refusing to "
                "adopt it — this is not a schema any Voicebox version wrote"
            )
    gen_cols, prof_cols = set(columns["generations"]), set(columns["profiles"])
    if (
        "status" in gen_cols
        or UPSTREAM_TABLES & set(tables)
        or UPSTREAM_PROFILE_COLUMNS & prof_cols
    ):
        schema = "upstream"
    elif "instruct" in gen_cols and "avatar_path" in prof_cols:
        schema = "fork"
    else:
        schema = "fork-old"
    return LegacyLayout(columns=columns, schema=schema, objects=objects)


def read_rows(query: Query, table: str) -> list[dict[str, Any]]:
    """Every row of a legacy table, in insertion order where the table has one."""
    try:
        return query(f'SELECT * FROM "{table}" ORDER BY rowid')
    except Exception:  # a WITHOUT ROWID table (never written by Voicebox) keeps its own order
        return query(f'SELECT * FROM "{table}"')
