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

from collections.abc import Callable
from dataclasses import dataclass, field
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
    """Legacy versions per generation id, oldest first (by created_at, then id)."""
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
