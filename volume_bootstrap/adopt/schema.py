"""The schema adoption must produce: ``0001_baseline`` exactly, as SQLite itself reports it."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from volume_bootstrap.adopt.errors import AdoptionError

BASELINE_REVISION = "0001_baseline"


def schema_signature(fetch: Callable[[str], list[tuple[Any, ...]]]) -> dict[str, Any]:
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
            return schema_signature(lambda sql: conn.execute(sql).fetchall())
        finally:
            conn.close()


def check_signature(found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse (roll back) when the adopted schema is not exactly the baseline's."""
    if found != expected:
        differing = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
        raise AdoptionError(
            f"the adopted schema differs from {BASELINE_REVISION} in {differing}; nothing was adopted"
        )
