"""The report of ``adopt_data_dir``: the plan's report plus what happened to the files and the database (a rerun
of the same adoption reports the same counts with nothing copied)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from volume_bootstrap.adopt.files import CopiedFiles, source_files
from volume_bootstrap.adopt.plan import Plan


def rerun_report(
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


def finish_report(
    report: dict[str, Any],
    copied: CopiedFiles,
    *,
    source_root: Path,
    source_db: Path,
    head: str,
    backup: str | None,
    moved: int,
    started: float,
) -> dict[str, Any]:
    """The report after the publish (or commit): the conversion's report plus the files and the database."""
    report.update(
        already_adopted=False,
        source=str(source_root),
        database=str(source_db),
        revision=head,
        backup=backup,
        files_copied=len(copied.created),
        files_reused=copied.reused,
        bytes_copied=copied.bytes_copied,
        files_missing=copied.absent,
        files_moved=moved,
        files_not_adopted=sorted(source_files(source_root) - set(copied.stored)),
        seconds=round(time.monotonic() - started, 3),
    )
    return report
