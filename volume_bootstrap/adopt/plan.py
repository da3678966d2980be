"""The adoption plan: every converted row and everything the report says about them, built without writing.

``RowConverter`` maps single legacy values onto our columns and counts what it had to change or could not keep
(rewritten paths, filled timestamps, assigned ids, refused paths) on the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backend.db.models import new_id
from backend.storage.blobs import UnsafePathError
from volume_bootstrap.adopt.extras import CARRIED_TABLES, Extras
from volume_bootstrap.adopt.legacy import CORE_TABLES, LegacyLayout
from volume_bootstrap.adopt.values import parse_timestamp, relativize


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


class RowConverter:
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
