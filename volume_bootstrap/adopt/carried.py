"""Converting the rows adoption carries beyond the core tables: generation versions, effect presets, stories
and their items (the rules are in ``volume_bootstrap.adopt.extras``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backend.statuses import GenerationStatus
from volume_bootstrap.adopt.extras import GAP_MS, seeded_preset_names
from volume_bootstrap.adopt.legacy import Query, read_rows
from volume_bootstrap.adopt.plan import RowConverter
from volume_bootstrap.adopt.values import as_bool, as_float, as_int


def convert_versions(
    conv: RowConverter,
    grouped: Mapping[str, list[dict[str, Any]]],
    defaults: Mapping[str, dict[str, Any]],
) -> None:
    """Every version of a kept, completed generation (ids, labels, chains, pins kept); others reported."""
    kept = {g["id"]: g for g in conv.plan.generations}
    for gen_id, versions in grouped.items():
        found = kept.get(gen_id)
        generation = (
            found if found is not None and found["status"] == GenerationStatus.COMPLETED else None
        )
        for version in versions:
            if generation is None:
                conv.plan.unadopted_versions.append(
                    {
                        "generation_id": gen_id,
                        "version_id": version.get("id"),
                        "label": version.get("label"),
                        "audio_path": conv.loose_path(version.get("audio_path")),
                    }
                )
                continue
            version_id = conv.row_id(version.get("id"))
            conv.plan.extras.versions.append(
                {
                    "id": version_id,
                    "generation_id": gen_id,
                    "label": str(version.get("label") or "version")[:200],
                    "audio_path": conv.path(
                        "generation_versions", version_id, version.get("audio_path")
                    ),
                    "effects_chain": version.get("effects_chain") or None,
                    "source_version_id": version.get("source_version_id"),
                    "is_default": version is defaults.get(gen_id),
                    "text": version.get("text"),
                    "language": version.get("language"),
                    "instruct": version.get("instruct"),
                    "seed": as_int(version.get("seed")),
                    "duration": None,
                    "sha256": None,
                    "size_bytes": None,
                    "created_at": conv.timestamp(
                        version.get("created_at"), generation["created_at"]
                    ),
                }
            )


def convert_presets(query: Query, conv: RowConverter) -> None:
    """Every legacy preset with its id, but one named like a built-in the migration seeds is
    reported as merged."""
    seeded = seeded_preset_names()
    for legacy in read_rows(query, "effect_presets"):
        name = str(legacy.get("name") or "Preset")[:100]
        if name in seeded:  # the same built-in, seeded here by the migration
            conv.plan.extras.presets_merged.append(name)
            continue
        conv.plan.extras.presets.append(
            {
                "id": conv.row_id(legacy.get("id")),
                "name": name,
                "description": legacy.get("description"),
                "effects_chain": str(legacy.get("effects_chain") or "[]"),
                "is_builtin": as_bool(legacy.get("is_builtin")),
                "sort_order": as_int(legacy.get("sort_order")) or 100,
                "created_at": conv.timestamp(legacy.get("created_at"), conv.now),
            }
        )


def convert_stories(query: Query, conv: RowConverter) -> None:
    """Stories and their items; an item whose story or generation was not kept is dropped (reported), a pin to a
    version that did not arrive goes NULL, and the old fork's ordered items are laid out on track 0."""
    columns = conv.plan.layout.columns
    kept_generations = {g["id"]: g for g in conv.plan.generations}
    version_ids = {v["id"] for v in conv.plan.extras.versions}
    extras = conv.plan.extras
    if "stories" not in columns:
        return
    story_ids: set[str] = set()
    for legacy in read_rows(query, "stories"):
        created_at = conv.timestamp(legacy.get("created_at"), conv.now)
        story: dict[str, Any] = {
            "id": conv.row_id(legacy.get("id")),
            "name": str(legacy.get("name") or "Story")[:200],
            "description": legacy.get("description"),
            "created_at": created_at,
            "updated_at": conv.timestamp(legacy.get("updated_at"), created_at),
        }
        extras.stories.append(story)
        story_ids.add(story["id"])
    if "story_items" not in columns:
        return
    item_columns = set(columns["story_items"])
    legacy_items = read_rows(query, "story_items")
    if "start_time_ms" not in item_columns:  # the old fork: an order, no times
        legacy_items.sort(key=lambda r: (str(r.get("story_id")), as_int(r.get("position")) or 0))
    cursor: dict[str, int] = {}
    for legacy in legacy_items:
        item_id = conv.row_id(legacy.get("id"))
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
                "created_at": conv.timestamp(legacy.get("created_at"), conv.now),
            }
        )
