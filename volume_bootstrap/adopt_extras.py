"""What adoption carries beyond profiles, samples and generations: upstream's generation versions, effect
presets, profile effects chains, and stories with their items (upstream's and the fork's).

Why a second step: adoption rebuilds the core tables as ``0001_baseline`` (the schema it checks itself against),
and these tables only exist from ``0004``. So, in the same ``BEGIN IMMEDIATE`` transaction, adoption upgrades to
``ADOPT_REVISION`` and then inserts what is planned here; a kill anywhere still rolls back to the legacy file.

Rules (each reported):
- Every version of a kept, completed generation arrives with its id, label, effects chain, source version, take
  settings and file (byte-identical: files are copied, never re-encoded). The default stays the default; a
  generation whose versions have none gets the oldest as default (upstream's own fallback), and the
  generation's ``audio_path`` is always its default version's file. The ``original`` version ``0004`` backfills
  for a generation is replaced by the legacy versions when there are any.
- Versions of generations that are not kept (soft deleted, unfinished, gone) are reported, not adopted.
- Effect presets: the built-in presets are seeded by ``0004``; a legacy built-in or user preset whose name
  matches one already there is reported as merged, every other preset arrives with its id.
- Stories and items arrive with their ids; an item whose generation was not kept is reported and dropped, a pin
  to a version that did not arrive goes NULL (the clip plays the default version, upstream's rule). The old
  fork's items have a ``position`` and no time: they are laid out in that order on track 0 with upstream's
  200 ms gap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ADOPT_REVISION = "0004_versions_effects_stories"
CARRIED_TABLES = ("generation_versions", "effect_presets", "stories", "story_items")
#: legacy columns of carried tables that have a place here (others are counted and reported as dropped)
KNOWN_COLUMNS = {
    "generation_versions": {
        "id",
        "generation_id",
        "label",
        "audio_path",
        "effects_chain",
        "source_version_id",
        "is_default",
        "text",
        "language",
        "instruct",
        "seed",
        "created_at",
    },
    "effect_presets": {
        "id",
        "name",
        "description",
        "effects_chain",
        "is_builtin",
        "sort_order",
        "created_at",
    },
    "stories": {"id", "name", "description", "created_at", "updated_at"},
    "story_items": {
        "id",
        "story_id",
        "generation_id",
        "version_id",
        "start_time_ms",
        "track",
        "trim_start_ms",
        "trim_end_ms",
        "volume",
        "created_at",
        "position",
    },
}
GAP_MS = 200

Query = Callable[[str], list[dict[str, Any]]]


@dataclass
class Extras:
    """The converted rows of the carried tables, and what the report says about them."""

    versions: list[dict[str, Any]] = field(default_factory=list)
    presets: list[dict[str, Any]] = field(default_factory=list)
    stories: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    profile_chains: dict[str, str] = field(default_factory=dict)
    presets_merged: list[str] = field(default_factory=list)
    items_dropped: list[dict[str, Any]] = field(default_factory=list)
    pins_cleared: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "generation_versions": len(self.versions),
            "effect_presets_adopted": len(self.presets),
            "stories": len(self.stories),
            "story_items": len(self.items),
        }

    def report(self) -> dict[str, Any]:
        return {
            "presets_merged": self.presets_merged,
            "story_items_dropped": self.items_dropped,
            "story_pins_cleared": self.pins_cleared,
        }


def seeded_preset_names() -> set[str]:
    """The built-in presets ``ADOPT_REVISION`` seeds (read from the revision itself, its frozen list)."""
    from migrations.runner import script_directory

    module = script_directory().get_revision(ADOPT_REVISION).module
    return {name for _id, name, _order, _description, _chain in module.BUILTIN_PRESETS}


def group_versions(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_generation: dict[str, list[dict[str, Any]]] = {}
    for version in rows:
        by_generation.setdefault(str(version.get("generation_id")), []).append(version)
    for versions in by_generation.values():
        versions.sort(key=lambda v: (str(v.get("created_at") or ""), str(v.get("id") or "")))
    return by_generation


def pick_default(
    versions: list[dict[str, Any]], as_bool: Callable[[object], bool]
) -> dict[str, Any]:
    """The flagged default (the last one flagged, if several), else the oldest (upstream's fallback)."""
    defaults = [v for v in versions if as_bool(v.get("is_default"))]
    return defaults[-1] if defaults else versions[0]


def insert_extras(conn: Any, extras: Extras, kept_generations: set[str]) -> None:
    """Insert through tables reflected from the database (at ``ADOPT_REVISION``), not the models."""
    from sqlalchemy import MetaData, Table, bindparam, select, update

    meta = MetaData()
    versions = Table("generation_versions", meta, autoload_with=conn)
    presets = Table("effect_presets", meta, autoload_with=conn)
    profiles = Table("profiles", meta, autoload_with=conn)
    with_versions = sorted({v["generation_id"] for v in extras.versions})
    if with_versions:
        conn.execute(versions.delete().where(versions.c.generation_id.in_(with_versions)))
        conn.execute(versions.insert(), extras.versions)
    names = {row[0] for row in conn.execute(select(presets.c.name))}
    clashing = [p["name"] for p in extras.presets if p["name"] in names]
    if (
        clashing
    ):  # the plan merged the seeded built-ins already; anything else is a bug, not a merge
        raise ValueError(f"effect presets already present: {clashing}")
    if extras.presets:
        conn.execute(presets.insert(), extras.presets)
    if extras.profile_chains:
        conn.execute(
            update(profiles)
            .where(profiles.c.id == bindparam("pid"))
            .values(effects_chain=bindparam("chain")),
            [{"pid": pid, "chain": chain} for pid, chain in extras.profile_chains.items()],
        )
    for table, rows in (("stories", extras.stories), ("story_items", extras.items)):
        if rows:
            conn.execute(Table(table, meta, autoload_with=conn).insert(), rows)


def convert_stories(
    query: Query,
    columns: Mapping[str, list[str]],
    kept_generations: Mapping[str, dict[str, Any]],
    version_ids: set[str],
    extras: Extras,
    *,
    row_id: Callable[[object], str],
    timestamp: Callable[[object, datetime], datetime],
    now: datetime,
    as_int: Callable[[object], int | None],
    as_float: Callable[[object], float | None],
    rows: Callable[[Query, str], list[dict[str, Any]]],
) -> None:
    if "stories" not in columns:
        return
    story_ids: set[str] = set()
    for legacy in rows(query, "stories"):
        created_at = timestamp(legacy.get("created_at"), now)
        story: dict[str, Any] = {
            "id": row_id(legacy.get("id")),
            "name": str(legacy.get("name") or "Story")[:200],
            "description": legacy.get("description"),
            "created_at": created_at,
            "updated_at": timestamp(legacy.get("updated_at"), created_at),
        }
        extras.stories.append(story)
        story_ids.add(story["id"])
    if "story_items" not in columns:
        return
    item_columns = set(columns["story_items"])
    legacy_items = rows(query, "story_items")
    if "start_time_ms" not in item_columns:  # the old fork: an order, no times
        legacy_items.sort(key=lambda r: (str(r.get("story_id")), as_int(r.get("position")) or 0))
    cursor: dict[str, int] = {}
    for legacy in legacy_items:
        item_id = row_id(legacy.get("id"))
        story_id, gen_id = str(legacy.get("story_id")), str(legacy.get("generation_id"))
        generation = kept_generations.get(gen_id)
        if story_id not in story_ids or generation is None:
            why = (
                "its story is gone" if story_id not in story_ids else "its generation was not kept"
            )
            extras.items_dropped.append({"id": item_id, "generation_id": gen_id, "reason": why})
            continue
        if "start_time_ms" in item_columns:
            start = as_int(legacy.get("start_time_ms")) or 0
        else:
            start = cursor.get(story_id, 0)
            cursor[story_id] = start + int((generation.get("duration") or 0) * 1000) + GAP_MS
        version_id = legacy.get("version_id")
        if version_id is not None and str(version_id) not in version_ids:
            extras.pins_cleared.append(item_id)
            version_id = None
        volume = as_float(legacy.get("volume"))
        extras.items.append(
            {
                "id": item_id,
                "story_id": story_id,
                "generation_id": gen_id,
                "version_id": None if version_id is None else str(version_id),
                "start_time_ms": start,
                "track": as_int(legacy.get("track")) or 0,
                "trim_start_ms": as_int(legacy.get("trim_start_ms")) or 0,
                "trim_end_ms": as_int(legacy.get("trim_end_ms")) or 0,
                "volume": 1.0 if volume is None else volume,
                "created_at": timestamp(legacy.get("created_at"), now),
            }
        )
