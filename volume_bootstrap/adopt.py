"""Adopt a legacy Voicebox database — and the data directory around it — into the volume.

Why this exists: people arrive with a ``voicebox.db`` from the desktop app (upstream) or from the RunPod fork's
image, and the issue's promise is that it is taken as is, with nothing lost. Voicebox has no schema version (it
migrates by column checks and ``create_all``), so the databases in the wild differ. Three are known
(their differences are listed below):

``fork``      the RunPod fork: absolute paths under ``/app/data``, a ``generation_jobs`` queue table, soft deleted
              generations (``deleted_at``), ``audio_path``/``duration`` NOT NULL, ``request_*`` columns.
``upstream``  jamiepine/voicebox: relative paths (sometimes with a legacy ``data/`` prefix), ``status``
              (generating | loading_model | completed | failed), ``generation_versions``, extra profile columns
              and tables (effects, stories, channels, captures, MCP bindings).
``fork-old``  the fork before ``generations.instruct`` and ``profiles.avatar_path`` existed.

How (``adopt_database_file``): one ``BEGIN IMMEDIATE`` transaction on the file (DDL included, see
``migrations.runner.migration_engine``) reads every row, counts every table, drops the legacy tables,
creates our schema by running the baseline migration itself (so the result *is* ``0001_baseline``, stamped in
the same transaction), inserts the converted rows, and checks the schema and foreign keys before committing. A
kill anywhere leaves the journal to roll the file back to the legacy database. Afterwards the file is compared with
a database built by the baseline migration and, while the baseline is head, with the models
(``schema_differences``). The caller (``migrate_volume`` or ``adopt_data_dir``) then upgrades to head.

Conversion rules (each reported, nothing silently lost):
- Paths become relative to ``<volume>/voicebox``: ``/app/data/``, the legacy data dir, ``<volume>/voicebox/`` or
  a leading ``data/`` are stripped; otherwise the path is cut where its ``profiles/`` or ``generations/`` part
  starts (after a component named ``data`` when there is one). A path with ``..`` or none of those parts is
  refused: the adoption stops and names the rows.
- Fork rows are ``completed``; upstream rows that were still ``generating``/``loading_model`` (or had no final
  status) become ``failed`` with an error saying adoption found them unfinished; their path, if any, is reported.
- Soft deleted fork generations stay out of history; they are reported with their paths and their files are not
  adopted (with ``--move`` they stay in the legacy data dir).
- Upstream's default ``generation_versions`` row gives the generation its ``audio_path``; every version, effect
  preset, profile effects chain, story and story item is carried too (``volume_bootstrap.adopt_extras``: the
  rows are inserted after an in-transaction upgrade to ``0004``, the version files copied byte-identical).
- Columns and tables that have no place in our schema (profile voice types, request metadata, jobs, channels,
  capture settings …) are dropped only after being counted; the report lists them.
- ``profile_name`` is filled from the profile; a generation whose profile is gone keeps its row with a NULL
  ``profile_id``; a sample whose profile is gone cannot exist in our schema and is reported, not adopted.

Files (``adopt_data_dir``): every file a kept row references is copied — or with ``move=True`` copied, then
removed from the source once the database is published — keeping its relative structure:
``profiles/<pid>/<file>`` and ``generations/<file>`` as the legacy app named them (the fork names generation
files after the job id, not the row id; upstream uses ``<gen>.wav`` / ``<gen>_processed.wav``). Keeping the names
means the relative path in the row is the same whether a database was adopted with its data dir or found on the
volume at boot next to files an operator copied there. Files are written atomically (``BlobStore``) and their
sha256 and size go into the rows. If anything fails, nothing is published and the files this run created are
removed; a kill after copying leaves only unreferenced files, which ``volume fsck`` moves to trash after its grace
period (and a rerun reuses identical ones).

At boot (a legacy ``voicebox.db`` found at the volume's database path, files copied beside it by an operator) the
rows get sizes and durations but no sha256: hashing every file under the lease would hold peers' cold starts. Files
of rows that were not adopted (soft deleted, versions of unfinished generations) stay on the volume unreferenced, listed in the
report; ``volume fsck`` later moves them to ``trash/`` — never deletes them.
"""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.db.errors import DatabaseError, SchemaMismatchError
from backend.db.models import Generation, Profile, ProfileSample, new_id, utcnow
from backend.db.sqlite_files import integrity_check, read_revision
from backend.db.volume_db import VolumeDatabase
from backend.statuses import FINAL, GenerationStatus
from backend.storage.blobs import BlobStore, StoredBlob, UnsafePathError, safe_relative, sha256_file
from volume_bootstrap.adopt_extras import (
    ADOPT_REVISION,
    CARRIED_TABLES,
    KNOWN_COLUMNS,
    Extras,
    convert_stories,
    group_versions,
    insert_extras,
    pick_default,
    seeded_preset_names,
)

log = logging.getLogger(__name__)

BASELINE_REVISION = "0001_baseline"
LEGACY_ROOTS = ("/app/data",)  # the fork's image: VOICEBOX data dir inside the container
ANCHORS = ("profiles", "generations")
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
# Legacy columns that land in a column of another name (every other unknown column is reported as dropped,
# including ``deleted_at``, which decides which rows are kept but is not stored).
RENAMED = {("generations", "generation_time_seconds"): "synthesis_seconds"}
# Legacy statuses (generations and the fork's job vocabulary) that are final; anything else is unfinished.
FINAL_STATUSES: dict[str, GenerationStatus] = {
    **{status.value: status for status in FINAL},
    "complete": GenerationStatus.COMPLETED,
    "error": GenerationStatus.FAILED,
    "canceled": GenerationStatus.CANCELLED,
}
OUR_TABLES = {"profiles": Profile, "profile_samples": ProfileSample, "generations": Generation}


class AdoptionError(DatabaseError):
    """Adoption refused or failed; nothing was published. The message says what to do."""


class LegacySchemaError(SchemaMismatchError):
    """The database is not one of the known Voicebox schemas (partial, or not Voicebox at all)."""


# ============================================================================================ paths
def relativize(raw: object, roots: Sequence[str]) -> str | None:
    """A legacy path as a path relative to ``<volume>/voicebox``; raises ``UnsafePathError`` if it can't be.

    Why so many cases: the fork stored absolute container paths, upstream relative ones cut at the first
    component named ``data`` (with a known bug: a data dir ``/data/voicebox`` gave ``voicebox/...``), older
    upstream versions stored ``data/...`` or absolute desktop paths (also Windows ones).
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    text = text.replace("\\", "/")
    text = re.sub(r"^[A-Za-z]:/", "/", text)  # a Windows drive is just another absolute prefix
    for root in roots:
        prefix = root.rstrip("/") + "/"
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"{raw!r} escapes the data directory")
    if parts and parts[0] in ANCHORS:
        start = 0
    else:
        candidates = [i for i in range(len(parts) - 1) if parts[i] in ANCHORS]
        after_data = [i for i in candidates if i > 0 and parts[i - 1] == "data"]
        if after_data:
            start = after_data[-1]
        elif candidates:
            start = candidates[-1]
        else:
            raise UnsafePathError(
                f"{raw!r} is not under the data directory (no profiles/ or generations/ part)"
            )
    rel = "/".join(parts[start:])
    if len(parts) - start < 2:
        raise UnsafePathError(f"{raw!r} names a folder, not a file")
    safe_relative(rel)
    return rel


def _roots(settings: Settings, source_root: Path | None) -> list[str]:
    roots = []
    if source_root is not None:
        roots.append(source_root.absolute().as_posix())
        resolved = source_root.resolve().as_posix()
        if resolved not in roots:
            roots.append(resolved)
    roots.append(settings.data_dir.absolute().as_posix())
    roots.extend(LEGACY_ROOTS)
    return roots


# ============================================================================================ values
def parse_timestamp(value: object) -> datetime | None:
    """Naive UTC from what legacy rows hold: SQLAlchemy's text form, ISO with ``T``/offset, or epoch numbers."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, (int, float)):
        seconds = float(value) / (1000.0 if value > 1e11 else 1.0)
        return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
    else:
        text = str(value).strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "t"}
    return bool(value)


def _as_int(value: object) -> int | None:
    """A legacy column value as an int; None for NULL, "" and anything that is not a number."""
    if not isinstance(value, str | bytes | int | float) or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _as_float(value: object) -> float | None:
    if not isinstance(value, str | bytes | int | float) or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _audio_duration(path: Path) -> float | None:
    try:
        import soundfile

        info = soundfile.info(str(path))
        return float(info.frames) / float(info.samplerate) if info.samplerate else None
    except Exception:  # a duration is a nicety; an unreadable header must not stop adoption
        return None


# ============================================================================================ reading
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


def _rows(query: Query, table: str) -> list[dict[str, Any]]:
    try:
        return query(f'SELECT * FROM "{table}" ORDER BY rowid')
    except Exception:  # a WITHOUT ROWID table (never written by Voicebox) keeps its own order
        return query(f'SELECT * FROM "{table}"')


# ============================================================================================ plan
@dataclass
class Plan:
    """The converted rows and everything the report says about them; built without writing anything."""

    layout: LegacyLayout
    counts_before: dict[str, int] = field(default_factory=dict)
    profiles: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    generations: list[dict[str, Any]] = field(default_factory=list)
    # "table.column" → how many rows had a value there
    dropped_columns: dict[str, int] = field(default_factory=dict)
    soft_deleted: list[dict[str, Any]] = field(default_factory=list)
    unfinished: list[dict[str, Any]] = field(default_factory=list)
    unadopted_versions: list[dict[str, Any]] = field(default_factory=list)
    orphan_samples: list[dict[str, Any]] = field(default_factory=list)
    orphan_generations: list[str] = field(default_factory=list)
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    paths_rewritten: int = 0
    timestamps_filled: int = 0
    ids_assigned: int = 0
    bad_paths: list[str] = field(default_factory=list)
    missing_files: list[dict[str, str]] = field(default_factory=list)
    extras: Extras = field(default_factory=Extras)

    @property
    def dropped_tables(self) -> dict[str, int]:
        carried = (*CORE_TABLES, *CARRIED_TABLES)
        return {t: n for t, n in self.counts_before.items() if t not in carried}

    def referenced_files(self) -> dict[str, list[str]]:
        """Relative path → the rows (``table:id``) that reference it, for every kept row."""
        refs: dict[str, list[str]] = {}
        for table, rows, column in (
            ("profiles", self.profiles, "avatar_path"),
            ("profile_samples", self.samples, "audio_path"),
            ("generations", self.generations, "audio_path"),
            ("generation_versions", self.extras.versions, "audio_path"),
        ):
            for row in rows:
                if row[column]:
                    refs.setdefault(row[column], []).append(f"{table}:{row['id']}")
        return refs

    def report(self) -> dict[str, Any]:
        return {
            "schema": self.layout.schema,
            "counts_before": dict(self.counts_before),
            "counts_after": {
                "profiles": len(self.profiles),
                "profile_samples": len(self.samples),
                "generations": len(self.generations),
                **self.extras.counts(),
            },
            **self.extras.report(),
            "dropped_tables": self.dropped_tables,
            "dropped_columns": sorted(self.dropped_columns),
            "dropped_column_values": dict(sorted(self.dropped_columns.items())),
            "dropped_objects": list(self.layout.objects),
            "soft_deleted_generations": len(self.soft_deleted),
            "soft_deleted": self.soft_deleted,
            "failed_unfinished": len(self.unfinished),
            "unfinished": self.unfinished,
            "unadopted_versions": self.unadopted_versions,
            "orphan_samples": self.orphan_samples,
            "orphan_generations": self.orphan_generations,
            "generation_jobs_by_status": self.jobs_by_status,
            "paths_rewritten": self.paths_rewritten,
            "timestamps_filled": self.timestamps_filled,
            "ids_assigned": self.ids_assigned,
            "missing_files": self.missing_files,
        }


class _Converter:
    """Row-by-row mapping of legacy rows onto our columns; collects what it could not keep."""

    def __init__(self, plan: Plan, roots: Sequence[str], now: datetime) -> None:
        self.plan = plan
        self.roots = roots
        self.now = now

    def path(self, table: str, row_id: str, raw: object) -> str | None:
        try:
            rel = relativize(raw, self.roots)
        except UnsafePathError as exc:
            self.plan.bad_paths.append(f"{table} {row_id}: {exc}")
            return None
        if rel is not None and rel != raw:
            self.plan.paths_rewritten += 1
        return rel

    def loose_path(self, raw: object) -> str | None:
        """For rows we report but do not keep: the relative form when there is one, else the raw path."""
        try:
            return relativize(raw, self.roots)
        except UnsafePathError:
            return None if raw is None else str(raw)

    def timestamp(self, value: object, fallback: datetime) -> datetime:
        parsed = parse_timestamp(value)
        if parsed is None:
            self.plan.timestamps_filled += 1
            return fallback
        return parsed

    def row_id(self, value: object) -> str:
        if value is None or str(value).strip() == "":
            self.plan.ids_assigned += 1
            return new_id()
        return str(value)


def build_plan(query: Query, roots: Sequence[str], now: datetime | None = None) -> Plan:
    """Read and convert every row; raises before anything is written if the schema or a path is bad."""
    layout = inspect_legacy(query)
    plan = Plan(layout=layout)
    conv = _Converter(plan, roots, now or utcnow())
    for table in layout.columns:
        plan.counts_before[table] = int(query(f'SELECT count(*) AS n FROM "{table}"')[0]["n"])
    for table, columns in layout.columns.items():
        if table in CORE_TABLES:
            ours = set(OUR_TABLES[table].__table__.columns.keys())
        elif table in KNOWN_COLUMNS:
            ours = KNOWN_COLUMNS[table]
        else:
            continue
        for column in columns:
            if column not in ours and (table, column) not in RENAMED:
                sql = f'SELECT count(*) AS n FROM "{table}" WHERE "{column}" IS NOT NULL'
                plan.dropped_columns[f"{table}.{column}"] = int(query(sql)[0]["n"])

    profiles_by_id = _convert_profiles(query, conv)
    _convert_samples(query, conv, profiles_by_id)
    grouped = (
        group_versions(_rows(query, "generation_versions"))
        if "generation_versions" in layout.columns
        else {}
    )
    versions = {gid: pick_default(vs, _as_bool) for gid, vs in grouped.items() if vs}
    _convert_generations(query, conv, profiles_by_id, versions, grouped)
    _convert_versions(conv, grouped, versions)
    if "effect_presets" in layout.columns:
        _convert_presets(query, conv)
    convert_stories(
        query,
        layout.columns,
        {g["id"]: g for g in plan.generations},
        {v["id"] for v in plan.extras.versions},
        plan.extras,
        row_id=conv.row_id,
        timestamp=conv.timestamp,
        now=conv.now,
        as_int=_as_int,
        as_float=_as_float,
        rows=_rows,
    )
    if "generation_jobs" in layout.columns and "status" in layout.columns["generation_jobs"]:
        rows = query("SELECT status, count(*) AS n FROM generation_jobs GROUP BY status")
        plan.jobs_by_status = {str(r["status"]): int(r["n"]) for r in rows}
    if plan.bad_paths:
        shown = "; ".join(plan.bad_paths[:10])
        more = f" (and {len(plan.bad_paths) - 10} more)" if len(plan.bad_paths) > 10 else ""
        raise AdoptionError(
            f"{len(plan.bad_paths)} path(s) cannot be made relative to the data directory: {shown}{more}; "
            "fix those rows in the legacy database (or remove them) and retry"
        )
    return plan


def _convert_profiles(query: Query, conv: _Converter) -> dict[str, dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for legacy in _rows(query, "profiles"):
        row: dict[str, Any] = {"id": conv.row_id(legacy.get("id"))}
        row["name"] = str(legacy.get("name") or f"profile-{row['id'][:8]}")
        row["description"] = legacy.get("description")
        row["language"] = str(legacy.get("language") or "en")
        row["avatar_path"] = conv.path("profiles", row["id"], legacy.get("avatar_path"))
        row["created_at"] = conv.timestamp(legacy.get("created_at"), conv.now)
        row["updated_at"] = conv.timestamp(legacy.get("updated_at"), row["created_at"])
        chain = legacy.get("effects_chain")
        if chain is not None and str(chain).strip():
            conv.plan.extras.profile_chains[row["id"]] = str(chain)
        conv.plan.profiles.append(row)
        by_id[row["id"]] = row
    return by_id


def _convert_samples(
    query: Query, conv: _Converter, profiles: Mapping[str, dict[str, Any]]
) -> None:
    per_profile: Counter[str] = Counter()
    for legacy in _rows(query, "profile_samples"):
        sample_id = conv.row_id(legacy.get("id"))
        profile = profiles.get(str(legacy.get("profile_id")))
        if profile is None:
            conv.plan.orphan_samples.append(
                {
                    "id": sample_id,
                    "profile_id": legacy.get("profile_id"),
                    "audio_path": conv.loose_path(legacy.get("audio_path")),
                }
            )
            continue
        raw = legacy.get("audio_path")
        if raw is None or not str(raw).strip():
            conv.plan.bad_paths.append(f"profile_samples {sample_id}: empty audio_path")
        rel = conv.path("profile_samples", sample_id, raw)
        # Legacy samples have no timestamp; ordering by (created_at, id) must keep their insertion order.
        offset = timedelta(microseconds=per_profile[profile["id"]])
        per_profile[profile["id"]] += 1
        row = dict(
            id=sample_id,
            profile_id=profile["id"],
            audio_path=rel,
            reference_text=str(legacy.get("reference_text") or ""),
            sha256=legacy.get("sha256"),
            duration=_as_float(legacy.get("duration")),
            size_bytes=_as_int(legacy.get("size_bytes")),
            created_at=parse_timestamp(legacy.get("created_at")) or profile["created_at"] + offset,
        )
        conv.plan.samples.append(row)


def _convert_versions(
    conv: _Converter,
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
                    "seed": _as_int(version.get("seed")),
                    "duration": None,
                    "sha256": None,
                    "size_bytes": None,
                    "created_at": conv.timestamp(
                        version.get("created_at"), generation["created_at"]
                    ),
                }
            )


def _convert_presets(query: Query, conv: _Converter) -> None:
    seeded = seeded_preset_names()
    for legacy in _rows(query, "effect_presets"):
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
                "is_builtin": _as_bool(legacy.get("is_builtin")),
                "sort_order": _as_int(legacy.get("sort_order")) or 100,
                "created_at": conv.timestamp(legacy.get("created_at"), conv.now),
            }
        )


def _convert_generations(
    query: Query,
    conv: _Converter,
    profiles: Mapping[str, dict[str, Any]],
    versions: Mapping[str, dict[str, Any]],
    grouped: Mapping[str, list[dict[str, Any]]],
) -> None:
    plan = conv.plan
    has_status = "status" in plan.layout.columns["generations"]
    for legacy in _rows(query, "generations"):
        gen_id = conv.row_id(legacy.get("id"))
        raw_path = legacy.get("audio_path")
        version = versions.get(gen_id)
        if version is not None and version.get("audio_path"):
            if version.get("audio_path") != raw_path and raw_path:
                known = {v.get("audio_path") for v in grouped.get(gen_id, [])}
                original = conv.loose_path(raw_path)
                if raw_path not in known:
                    plan.unadopted_versions.append(
                        {
                            "generation_id": gen_id,
                            "version_id": None,
                            "label": "generation audio_path",
                            "audio_path": original,
                        }
                    )
            raw_path = version["audio_path"]
        if legacy.get("deleted_at") is not None:
            plan.soft_deleted.append(
                {
                    "id": gen_id,
                    "deleted_at": str(legacy.get("deleted_at")),
                    "audio_path": conv.loose_path(raw_path),
                }
            )
            continue
        profile = profiles.get(str(legacy.get("profile_id")))
        if profile is None:
            plan.orphan_generations.append(gen_id)
        status, error, unfinished = _status(legacy, has_status, raw_path)
        if unfinished:
            plan.unfinished.append(
                {
                    "id": gen_id,
                    "status": legacy.get("status"),
                    "audio_path": conv.loose_path(raw_path),
                }
            )
            raw_path = None  # never completed: its file (if any) is not history
        row: dict[str, Any] = dict(
            id=gen_id,
            profile_id=profile["id"] if profile else None,
            profile_name=profile["name"] if profile else legacy.get("profile_name"),
            text=str(legacy.get("text") or ""),
            language=str(legacy.get("language") or "en"),
            audio_path=conv.path("generations", gen_id, raw_path),
            duration=_as_float(legacy.get("duration")),
            seed=_as_int(legacy.get("seed")),
            instruct=legacy.get("instruct"),
            engine=str(legacy.get("engine") or "qwen"),
            model_size=legacy.get("model_size"),
            status=status,
            error=error,
            is_favorited=_as_bool(legacy.get("is_favorited")),
            source=str(legacy.get("source") or "manual"),
            sha256=legacy.get("sha256"),
            size_bytes=_as_int(legacy.get("size_bytes")),
            owner_worker_id=None,
            lease_expires_at=None,
            synthesis_seconds=_as_float(
                legacy.get("synthesis_seconds", legacy.get("generation_time_seconds"))
            ),
            created_at=conv.timestamp(legacy.get("created_at"), conv.now),
            completed_at=parse_timestamp(legacy.get("completed_at")),
        )
        if status == GenerationStatus.COMPLETED and row["completed_at"] is None:
            # Legacy rows never had one; bundle import fills it the same way.
            row["completed_at"] = row["created_at"]
        for name in ("queue_wait_seconds", "model_load_seconds", "rtf"):
            row[name] = _as_float(legacy.get(name))
        plan.generations.append(row)


def _status(
    legacy: Mapping[str, Any], has_status: bool, audio_path: object
) -> tuple[GenerationStatus, str | None, bool]:
    """Our status and error for a legacy row, and whether it was left unfinished.

    Fork rows are finished by construction (the fork inserts a generation when its audio is written). An
    upstream row still ``generating`` or ``loading_model`` has no live worker behind it any more: ``failed``.
    """
    error = legacy.get("error")
    if not has_status:
        return GenerationStatus.COMPLETED, error, False
    text = str(legacy.get("status") or "").strip().lower()
    if not text and audio_path:
        return (
            GenerationStatus.COMPLETED,
            error,
            False,
        )  # upstream added the column as 'completed' for older rows
    final = FINAL_STATUSES.get(text)
    if final is not None:
        return final, error, False
    message = (
        f"adoption found this generation unfinished (legacy status {legacy.get('status')!r}): "
        "it never completed — generate it again"
    )
    return GenerationStatus.FAILED, f"{message}; legacy error: {error}" if error else message, True


# ============================================================================================ files
def attach_files(
    plan: Plan, files_root: Path, stored: Mapping[str, StoredBlob] | None = None
) -> list[dict[str, str]]:
    """Fill sha256/size/duration from the stored files and list the rows whose file is absent.

    ``stored`` holds what ``adopt_data_dir`` just copied (hash known); a file only found on the volume gets its
    size and duration (hashing every legacy file at boot, under the lease, would stall peers' cold starts).
    """
    missing: list[dict[str, str]] = []
    stored = stored or {}
    for row in plan.profiles:
        rel = row["avatar_path"]
        if rel and rel not in stored and not (files_root / rel).is_file():
            missing.append({"table": "profiles", "id": row["id"], "path": rel})
    for table, rows in (
        ("profile_samples", plan.samples),
        ("generations", plan.generations),
        ("generation_versions", plan.extras.versions),
    ):
        for row in rows:
            rel = row["audio_path"]
            if not rel:
                continue
            full = files_root / rel
            blob = stored.get(rel)
            if blob is not None:
                row["sha256"], row["size_bytes"] = blob.sha256, blob.size
            elif full.is_file():
                row["size_bytes"] = full.stat().st_size
            else:
                missing.append({"table": table, "id": row["id"], "path": rel})
                continue
            if row["duration"] is None:
                row["duration"] = _audio_duration(full)
    plan.missing_files = missing
    return missing


# ============================================================================================ the file
def adopt_database_file(
    settings: Settings,
    path: Path,
    *,
    source_root: Path | None = None,
    stored: Mapping[str, StoredBlob] | None = None,
) -> dict[str, Any]:
    """Convert a legacy Voicebox SQLite file, in place, into ``0001_baseline`` plus, upgraded to
    ``ADOPT_REVISION`` in the same transaction, its versions, presets and stories; returns the report.

    ``path`` is a private work copy (``migrate_volume`` and ``adopt_data_dir`` call this under the lease). The
    whole conversion is one ``BEGIN IMMEDIATE`` transaction: a failure or a kill leaves the legacy file.
    """
    from alembic import command

    from migrations.runner import (
        alembic_config,
        head_revision,
        migration_transaction,
        schema_differences,
    )

    path = Path(path)
    started = time.monotonic()
    if read_revision(path) is not None:
        raise AdoptionError(
            f"{path.name} already has an Alembic revision; it is not a legacy database"
        )
    expected = baseline_signature()
    with migration_transaction(path) as conn:

        def query(sql: str) -> list[dict[str, Any]]:
            return [dict(row) for row in conn.exec_driver_sql(sql).mappings()]

        plan = build_plan(query, _roots(settings, source_root))
        attach_files(plan, settings.data_dir, stored)
        _drop_legacy(conn, plan.layout)
        command.upgrade(alembic_config(conn), BASELINE_REVISION)
        _insert_rows(conn, plan)
        _check_signature(
            _schema_signature(lambda sql: [tuple(r) for r in conn.exec_driver_sql(sql)]),
            expected,
        )
        stamped = conn.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
        if [tuple(r) for r in stamped] != [(BASELINE_REVISION,)]:
            raise AdoptionError(f"adoption did not stamp {BASELINE_REVISION}: {stamped}")
        # versions, presets, stories: their tables exist from ADOPT_REVISION (same transaction)
        command.upgrade(alembic_config(conn), ADOPT_REVISION)
        insert_extras(conn, plan.extras, {g["id"] for g in plan.generations})
        problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise AdoptionError(f"foreign key check failed after adoption: {problems[:5]}")
    # While ADOPT_REVISION is head the models must match now; otherwise the caller compares after upgrading.
    if head_revision() == ADOPT_REVISION:
        diffs = schema_differences(path)
        if diffs:
            raise AdoptionError(f"the adopted database differs from the models: {diffs[:5]}")
    _vacuum(path)
    report = plan.report()
    report["seconds"] = round(time.monotonic() - started, 3)
    log.info(
        "adopted a %s Voicebox database: %s (dropped %s)",
        plan.layout.schema,
        report["counts_after"],
        plan.dropped_tables,
    )
    return report


def _drop_legacy(conn: Any, layout: LegacyLayout) -> None:
    """Every legacy object goes: our tables are rebuilt from the baseline migration, not altered."""
    for obj in layout.objects:
        kind, name = obj.split(":", 1)
        if kind == "view":
            conn.exec_driver_sql(f'DROP VIEW IF EXISTS "{name}"')
        elif kind == "trigger":
            conn.exec_driver_sql(f'DROP TRIGGER IF EXISTS "{name}"')
    for table in layout.columns:
        conn.exec_driver_sql(f'DROP TABLE "{table}"')


def _insert_rows(conn: Any, plan: Plan) -> None:
    """Insert through tables reflected from the baseline just created, not the models.

    The models describe head; a later revision's column (with a Python-side default) would otherwise end up in
    an INSERT against the baseline table that does not have it yet.
    """
    from sqlalchemy import MetaData, Table

    meta = MetaData()
    for table, rows in (
        ("profiles", plan.profiles),
        ("profile_samples", plan.samples),
        ("generations", plan.generations),
    ):
        if rows:
            conn.execute(Table(table, meta, autoload_with=conn).insert(), rows)


def _schema_signature(fetch: Callable[[str], list[tuple[Any, ...]]]) -> dict[str, Any]:
    """Every table, index and foreign key as SQLite itself reports them, DDL text included."""
    sig: dict[str, Any] = {}
    master = fetch(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
        "AND name != 'alembic_version' ORDER BY type, name"
    )
    for kind, name, table, sql in master:
        entry: dict[str, Any] = {"type": kind, "table": table, "sql": sql}
        if kind == "table":
            entry["columns"] = [tuple(r) for r in fetch(f'PRAGMA table_info("{name}")')]
            entry["fks"] = sorted(tuple(r) for r in fetch(f'PRAGMA foreign_key_list("{name}")'))
            entry["indexes"] = sorted(
                (r[1], r[2], tuple(c[2] for c in fetch(f'PRAGMA index_info("{r[1]}")')))
                for r in fetch(f'PRAGMA index_list("{name}")')
            )
        sig[f"{kind}:{name}"] = entry
    return sig


def baseline_signature() -> dict[str, Any]:
    """The schema the baseline migration builds, from a scratch database (the reference for adoption)."""
    from migrations.runner import upgrade_file

    with tempfile.TemporaryDirectory(prefix="vb-baseline-") as tmp:
        reference = Path(tmp) / "baseline.db"
        upgrade_file(reference, BASELINE_REVISION)
        conn = sqlite3.connect(reference)
        try:
            return _schema_signature(lambda sql: conn.execute(sql).fetchall())
        finally:
            conn.close()


def _check_signature(found: dict[str, Any], expected: dict[str, Any]) -> None:
    if found != expected:
        differing = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        raise AdoptionError(
            f"the adopted schema differs from {BASELINE_REVISION} in {differing}; nothing was adopted"
        )


def _vacuum(path: Path) -> None:
    """Give back the legacy tables' pages: the file is copied whole on every write (``docs/architecture.md``)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("VACUUM")
    finally:
        conn.close()


# ============================================================================================ data dir
def _locate_source(data_dir: Path) -> tuple[Path, Path]:
    """The legacy data dir and its database; accepts the data dir, its parent, or the ``.db`` file."""
    data_dir = data_dir.expanduser().absolute()
    if data_dir.is_file():
        return data_dir.parent, data_dir
    for root in (data_dir, data_dir / "data"):
        if (root / "voicebox.db").is_file():
            return root, root / "voicebox.db"
    raise AdoptionError(
        f"no voicebox.db in {data_dir} (nor in {data_dir / 'data'}); pass the Voicebox data directory"
    )


def snapshot_database(source: Path, target: Path) -> None:
    """A consistent private copy of the legacy file, never touching the source.

    The source's journal or WAL files are copied beside it first, so a copy taken after a crash of the
    legacy app is recovered in the copy (SQLite cannot roll back a hot journal through a read-only handle).
    """
    staging = target.parent / f"stage-{target.name}"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        staged = staging / source.name
        shutil.copyfile(source, staged)
        for suffix in ("-journal", "-wal", "-shm"):
            side = Path(f"{source}{suffix}")
            if side.is_file():
                shutil.copyfile(side, Path(f"{staged}{suffix}"))
        src = sqlite3.connect(str(staged))
        dst = sqlite3.connect(str(target))
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    except sqlite3.DatabaseError as exc:
        raise AdoptionError(f"{source} is not a readable SQLite database ({exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _volume_rows(path: Path) -> dict[str, int]:
    """Rows in our tables of a volume database (missing tables count as empty)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return {
            t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            for t in CORE_TABLES
            if t in tables
        }
    finally:
        conn.close()


def _refuse_nonempty(path: Path) -> None:
    try:
        rows = _volume_rows(path)
    except sqlite3.DatabaseError as exc:
        raise AdoptionError(
            f"the volume database cannot be read ({exc}); restore a backup with "
            "`voicebox-worker db restore` before adopting"
        ) from exc
    if any(rows.values()):
        raise AdoptionError(
            "the volume already has a database with data "
            f"({', '.join(f'{n} {t}' for t, n in rows.items())}); adoption does not merge — export the "
            "legacy profiles as bundles and import them (POST /profiles/import), or adopt into an empty volume"
        )


def _holds_plan(path: Path, plan: Plan) -> bool:
    """Whether the volume database already holds every row this adoption would create (same ids): the same
    source adopted before. An empty plan holds nothing, so an empty legacy database is never "adopted"."""
    wanted = {
        "profiles": {row["id"] for row in plan.profiles},
        "profile_samples": {row["id"] for row in plan.samples},
        "generations": {row["id"] for row in plan.generations},
    }
    if not any(wanted.values()) or plan.ids_assigned:
        return False  # rows without ids get new ones each run: no way to recognise them
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.DatabaseError:
        return False
    try:
        for table, ids in wanted.items():
            present = {r[0] for r in conn.execute(f'SELECT id FROM "{table}"')}
            if not ids <= present:
                return False
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()
    return True


def _already_adopted(
    plan: Plan, source_root: Path, source_db: Path, head: str, started: float
) -> dict[str, Any]:
    """The report of a rerun: the same counts, nothing copied, nothing published."""
    report = plan.report()
    report.update(
        already_adopted=True,
        message=(
            f"already adopted: the volume holds every profile, sample and generation of {source_db}; "
            "nothing was changed"
        ),
        source=str(source_root),
        database=str(source_db),
        revision=head,
        backup=None,
        files_copied=0,
        files_reused=0,
        bytes_copied=0,
        files_missing=[],
        files_moved=0,
        seconds=round(time.monotonic() - started, 3),
    )
    return report


def _source_files(root: Path) -> set[str]:
    found: set[str] = set()
    for top in ANCHORS:
        base = root / top
        if base.is_dir():
            found.update(p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file())
    return found


def _copy_files(
    plan: Plan, source_root: Path, blobs: BlobStore, created: list[str]
) -> tuple[dict[str, StoredBlob], list[dict[str, str]], int]:
    """Copy every referenced file that exists; identical files already on the volume are reused."""
    stored: dict[str, StoredBlob] = {}
    absent: list[dict[str, str]] = []
    reused = 0
    for rel, refs in sorted(plan.referenced_files().items()):
        source = source_root.joinpath(*safe_relative(rel).parts)
        if not source.is_file():
            for ref in refs:
                table, row_id = ref.split(":", 1)
                absent.append({"table": table, "id": row_id, "path": rel})
            continue
        target = blobs.path(rel)
        if target.exists():
            digest = sha256_file(source)
            if target.is_file() and sha256_file(target) == digest:
                stored[rel] = StoredBlob(rel, target.stat().st_size, digest)
                reused += 1
                continue
            raise AdoptionError(
                f"the volume already has a different file at voicebox/{rel}; move it away (or remove it) "
                "and retry — adoption never overwrites a file"
            )
        stored[rel] = blobs.write_file(rel, source)
        created.append(rel)
    return stored, absent, reused


def _remove_created(blobs: BlobStore, created: Sequence[str]) -> None:
    """Undo the copies; empty per-profile folders go too, the layout's top folders stay."""
    for rel in created:
        blobs.delete(rel)
        parent = blobs.path(rel).parent
        while parent.parent != blobs.root and parent.is_dir():
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent


def adopt_data_dir(settings: Settings, data_dir: Path, move: bool = False) -> dict[str, Any]:
    """Take a Voicebox data directory (``voicebox.db`` + ``profiles/`` + ``generations/``) into the volume.

    Refuses a volume whose database already holds rows (no silent merge). Files are copied first (atomic
    writes), then under the lease the legacy database is converted on the work copy, upgraded to head and
    published. Any failure publishes nothing and removes the files this run created. With ``move`` the adopted
    source files are removed only after the publish.
    """
    from migrations.runner import head_revision
    from volume_bootstrap.layout import ensure_layout

    started = time.monotonic()
    source_root, source_db = _locate_source(Path(data_dir))
    if source_root.resolve() == settings.data_dir.resolve():
        raise AdoptionError(
            f"{source_root} is the volume's own data directory; to adopt a legacy database already on the "
            f"volume, put it at {settings.db_path} and run `voicebox-worker bootstrap`"
        )
    ensure_layout(settings)
    head = head_revision()
    db = VolumeDatabase(settings, expected_revision=head)
    blobs = BlobStore(settings)
    settings.local_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="adopt-", dir=settings.local_dir))
    created: list[str] = []
    try:
        legacy = scratch / "legacy.db"
        snapshot_database(source_db, legacy)
        verdict = integrity_check(legacy)
        if verdict != "ok":
            raise AdoptionError(
                f"{source_db} fails integrity_check ({verdict}); nothing was adopted"
            )
        plan_conn = sqlite3.connect(f"file:{legacy}?mode=ro", uri=True)
        plan_conn.row_factory = sqlite3.Row
        try:
            plan = build_plan(
                lambda sql: [dict(r) for r in plan_conn.execute(sql)],
                _roots(settings, source_root),
            )
        finally:
            plan_conn.close()

        # Fail before copying gigabytes; checked again under the lease. A rerun of this same adoption is a
        # no-op that says so (its rows are all there), not a refusal.
        if settings.database_url:
            pass  # PostgreSQL: the copy below refuses a server database holding another library
        elif settings.db_path.exists():
            db.refresh(force=True)
            if _holds_plan(db.local_path, plan):
                return _already_adopted(plan, source_root, source_db, head, started)
            _refuse_nonempty(db.local_path)

        stored, absent, reused = _copy_files(plan, source_root, blobs, created)
        backup = None
        if settings.database_url:
            report = _adopt_into_server(settings, legacy, scratch, source_root, stored, head)
        else:
            report, backup = _adopt_into_volume(settings, db, legacy, source_root, stored, head)
    except BaseException:
        _remove_created(blobs, created)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _finish(
        report, backup, stored, created, reused, absent, source_root, source_db, head, move, started
    )


def _adopt_into_server(
    settings: Settings,
    legacy: Path,
    scratch: Path,
    source_root: Path,
    stored: dict[str, Any],
    head: str,
) -> dict[str, Any]:
    """``db adopt`` with ``VOICEBOX_DATABASE_URL``: adopt in a scratch file, then the verified copy onto the
    server (one transaction; a server database holding another library is refused, nothing is half-written)."""
    from migrations.runner import schema_differences, upgrade_file
    from volume_bootstrap.library_copy import copy_file_to_postgres

    work = scratch / "adopted.db"
    shutil.copyfile(legacy, work)
    report = adopt_database_file(settings, work, source_root=source_root, stored=stored)
    upgrade_file(work, head)
    verdict = integrity_check(work)
    diffs = schema_differences(work) if verdict == "ok" else []
    if verdict != "ok" or read_revision(work) != head or diffs:
        raise AdoptionError(f"adopted database failed its checks ({verdict}, {diffs[:5]})")
    copied = copy_file_to_postgres(settings, work, settings.database_url or "")
    if copied.action == "already identical":
        report["message"] = (
            "already adopted: the server database already holds exactly this library"
        )
    report["database_copy"] = copied.as_dict()
    return report


def _adopt_into_volume(
    settings: Settings,
    db: VolumeDatabase,
    legacy: Path,
    source_root: Path,
    stored: dict[str, Any],
    head: str,
) -> tuple[dict[str, Any], str | None]:
    from backend.db.backups import backup_shared
    from migrations.runner import schema_differences, upgrade_file

    backup = None
    with db.write_file(check_schema=False) as work:
        if work.path.exists():
            _refuse_nonempty(work.path)
            backup = backup_shared(settings, read_revision(work.path)).name
        shutil.copyfile(legacy, work.path)
        Path(f"{work.path}-journal").unlink(missing_ok=True)
        report = adopt_database_file(settings, work.path, source_root=source_root, stored=stored)
        upgrade_file(work.path, head)
        verdict = integrity_check(work.path)
        if verdict != "ok" or read_revision(work.path) != head:
            raise AdoptionError(f"adopted database failed its checks ({verdict})")
        diffs = schema_differences(work.path)
        if diffs:
            raise AdoptionError(f"adopted database differs from the models: {diffs[:5]}")
    return report, backup


def _finish(
    report: dict[str, Any],
    backup: str | None,
    stored: dict[str, Any],
    created: list[str],
    reused: int,
    absent: list[dict[str, str]],
    source_root: Path,
    source_db: Path,
    head: str,
    move: bool,
    started: float,
) -> dict[str, Any]:
    """After the publish (or commit): remove moved sources, and the report."""
    moved = 0
    if move:
        for rel in stored:
            try:
                (source_root / rel).unlink()
                moved += 1
            except OSError as exc:  # published already: a leftover source file loses nothing
                log.warning("could not remove %s after adoption: %s", source_root / rel, exc)
    adopted = set(stored)
    report.update(
        already_adopted=False,
        source=str(source_root),
        database=str(source_db),
        revision=head,
        backup=backup,
        files_copied=len(created),
        files_reused=reused,
        bytes_copied=sum(stored[rel].size for rel in created),
        files_missing=absent,
        files_moved=moved,
        files_not_adopted=sorted(_source_files(source_root) - adopted),
        seconds=round(time.monotonic() - started, 3),
    )
    return report
