"""Converting one legacy SQLite file in place, in one ``BEGIN IMMEDIATE`` transaction (the package docstring
says how).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.db.sqlite_files import read_revision
from backend.storage.blobs import StoredBlob
from volume_bootstrap.adopt.errors import AdoptionError
from volume_bootstrap.adopt.extras import ADOPT_REVISION, insert_extras
from volume_bootstrap.adopt.files import attach_files
from volume_bootstrap.adopt.legacy import LegacyLayout
from volume_bootstrap.adopt.plan import Plan
from volume_bootstrap.adopt.planning import build_plan
from volume_bootstrap.adopt.schema import (
    BASELINE_REVISION,
    baseline_signature,
    check_signature,
    schema_signature,
)
from volume_bootstrap.adopt.values import source_roots

log = logging.getLogger(__name__)


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

        plan = build_plan(query, source_roots(settings, source_root))
        attach_files(plan, settings.data_dir, stored)
        _drop_legacy(conn, plan.layout)
        command.upgrade(alembic_config(conn), BASELINE_REVISION)
        _insert_rows(conn, plan)
        check_signature(
            schema_signature(lambda sql: [tuple(r) for r in conn.exec_driver_sql(sql)]),
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


def _vacuum(path: Path) -> None:
    """Give back the legacy tables' pages: the file is copied whole on every write (``docs/architecture.md``)."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("VACUUM")
    finally:
        conn.close()
