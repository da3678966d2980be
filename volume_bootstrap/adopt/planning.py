"""Building the plan: reading every legacy row and converting profiles, samples and generations (the carried
tables through ``volume_bootstrap.adopt.carried``); raises before anything is written if a path is bad.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from backend.db.models import Generation, Profile, ProfileSample, utcnow
from backend.statuses import FINAL, GenerationStatus
from volume_bootstrap.adopt.carried import convert_presets, convert_stories, convert_versions
from volume_bootstrap.adopt.errors import AdoptionError
from volume_bootstrap.adopt.extras import KNOWN_COLUMNS, group_versions, pick_default
from volume_bootstrap.adopt.legacy import CORE_TABLES, Query, inspect_legacy, read_rows
from volume_bootstrap.adopt.plan import Plan, RowConverter
from volume_bootstrap.adopt.values import as_bool, as_float, as_int, parse_timestamp

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


def build_plan(query: Query, roots: Sequence[str], now: datetime | None = None) -> Plan:
    """Read and convert every row; raises before anything is written if the schema or a path is bad."""
    layout = inspect_legacy(query)
    plan = Plan(layout=layout)
    conv = RowConverter(plan, roots, now or utcnow())
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

    profiles_by_id = convert_profiles(query, conv)
    convert_samples(query, conv, profiles_by_id)
    grouped = (
        group_versions(read_rows(query, "generation_versions"))
        if "generation_versions" in layout.columns
        else {}
    )
    versions = {gid: pick_default(vs, as_bool) for gid, vs in grouped.items() if vs}
    convert_generations(query, conv, profiles_by_id, versions, grouped)
    convert_versions(conv, grouped, versions)
    if "effect_presets" in layout.columns:
        convert_presets(query, conv)
    convert_stories(query, conv)
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


def convert_profiles(query: Query, conv: RowConverter) -> dict[str, dict[str, Any]]:
    """Every legacy profile (effects chains go to the extras); returns them by id."""
    by_id: dict[str, dict[str, Any]] = {}
    for legacy in read_rows(query, "profiles"):
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


def convert_samples(
    query: Query, conv: RowConverter, profiles: Mapping[str, dict[str, Any]]
) -> None:
    """Samples of kept profiles; one whose profile is gone is reported (our schema cannot hold it)."""
    per_profile: Counter[str] = Counter()
    for legacy in read_rows(query, "profile_samples"):
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
            duration=as_float(legacy.get("duration")),
            size_bytes=as_int(legacy.get("size_bytes")),
            created_at=parse_timestamp(legacy.get("created_at")) or profile["created_at"] + offset,
        )
        conv.plan.samples.append(row)


def convert_generations(
    query: Query,
    conv: RowConverter,
    profiles: Mapping[str, dict[str, Any]],
    versions: Mapping[str, dict[str, Any]],
    grouped: Mapping[str, list[dict[str, Any]]],
) -> None:
    """Every generation (its default version's file when it has versions); soft deleted ones are
    reported and left out, unfinished ones become ``failed``."""
    plan = conv.plan
    has_status = "status" in plan.layout.columns["generations"]
    for legacy in read_rows(query, "generations"):
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
        status, error, unfinished = legacy_status(legacy, has_status, raw_path)
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
            duration=as_float(legacy.get("duration")),
            seed=as_int(legacy.get("seed")),
            instruct=legacy.get("instruct"),
            engine=str(legacy.get("engine") or "qwen"),
            model_size=legacy.get("model_size"),
            status=status,
            error=error,
            is_favorited=as_bool(legacy.get("is_favorited")),
            source=str(legacy.get("source") or "manual"),
            sha256=legacy.get("sha256"),
            size_bytes=as_int(legacy.get("size_bytes")),
            owner_worker_id=None,
            lease_expires_at=None,
            synthesis_seconds=as_float(
                legacy.get("synthesis_seconds", legacy.get("generation_time_seconds"))
            ),
            created_at=conv.timestamp(legacy.get("created_at"), conv.now),
            completed_at=parse_timestamp(legacy.get("completed_at")),
        )
        if status == GenerationStatus.COMPLETED and row["completed_at"] is None:
            # Legacy rows never had one; bundle import fills it the same way.
            row["completed_at"] = row["created_at"]
        for name in ("queue_wait_seconds", "model_load_seconds", "rtf"):
            row[name] = as_float(legacy.get(name))
        plan.generations.append(row)


def legacy_status(
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
