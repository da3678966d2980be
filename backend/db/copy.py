"""Moving a library between the volume's SQLite database and PostgreSQL (``voicebox-worker db copy``).

Why it is safe to run twice: the copy is one transaction on the target that ends with a check — the target's
row count and checksum of every table must equal the source's — and commits only then; a target that already
holds exactly the source's rows is left alone and reported as such. A target holding anything else is refused
unless the caller says ``replace`` (then its rows are deleted in the same transaction, so a failure leaves it as
it was). Both sides must be at this code's head revision (the target is migrated first when it is empty).

Why an order-free checksum: the two databases sort text differently (collations), so each row is hashed on its
own from normalised values (datetimes as ISO text, booleans as booleans, floats by ``repr``) and the sorted row
digests are hashed again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, func, select
from sqlalchemy.engine import Connection

from backend.db.errors import DatabaseError
from backend.db.models import Base

BATCH_ROWS = 2000


class CopyRefusedError(DatabaseError):
    """The target holds other rows (pass replace), or one side is not at this code's revision."""


class CopyVerificationError(DatabaseError):
    """After copying, a table's count or checksum differed from the source's: nothing was committed."""


@dataclass(frozen=True)
class TableDigest:
    rows: int
    checksum: str


@dataclass
class CopyReport:
    action: str  # copied | already identical
    source: str
    target: str
    revision: str | None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    replaced_rows: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def library_tables() -> list[Table]:
    """Every table of the models, parents before children (the insert order)."""
    return list(Base.metadata.sorted_tables)


def _normal(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    return value


def _rows(conn: Connection, table: Table) -> Iterator[dict[str, Any]]:
    result = conn.execute(select(table).execution_options(yield_per=BATCH_ROWS))
    for row in result.mappings():
        yield dict(row)


def table_digest(conn: Connection, table: Table) -> TableDigest:
    digests = sorted(
        hashlib.sha256(
            json.dumps({k: _normal(v) for k, v in row.items()}, sort_keys=True).encode()
        ).digest()
        for row in _rows(conn, table)
    )
    outer = hashlib.sha256()
    for digest in digests:
        outer.update(digest)
    return TableDigest(len(digests), outer.hexdigest())


def digests(conn: Connection) -> dict[str, TableDigest]:
    return {table.name: table_digest(conn, table) for table in library_tables()}


#: the tables whose rows make a library: a target holding any of them, or a preset of its own, is "non-empty"
#: (the seeded default channel, settings row and built-in effect presets of a fresh database do not count)
LIBRARY_TABLES = (
    "profiles",
    "profile_samples",
    "generations",
    "generation_versions",
    "stories",
    "story_items",
)


def library_rows(conn: Connection) -> int:
    tables = {t.name: t for t in library_tables()}
    rows = sum(
        int(conn.execute(select(func.count()).select_from(tables[name])).scalar() or 0)
        for name in LIBRARY_TABLES
    )
    presets = tables["effect_presets"]
    own = select(func.count()).select_from(presets).where(presets.c.is_builtin.is_(False))
    return rows + int(conn.execute(own).scalar() or 0)


def copy_rows(
    source: Connection,
    target: Connection,
    *,
    source_name: str,
    target_name: str,
    revision: str | None,
    replace: bool,
) -> CopyReport:
    """Copy every table inside the caller's transaction on ``target``; raise (caller rolls back) on a mismatch.

    ``target`` must already be at ``revision``; the caller commits only when this returns.
    """
    import time

    started = time.monotonic()
    wanted = digests(source)
    existing = library_rows(target)
    report = CopyReport("copied", source_name, target_name, revision)
    if digests(target) == wanted:
        report.action = "already identical"
        report.tables = {name: asdict(d) for name, d in wanted.items()}
        report.seconds = round(time.monotonic() - started, 3)
        return report
    if existing and not replace:
        raise CopyRefusedError(
            f"the target {target_name} already holds {existing} rows of another library; "
            "nothing was copied (pass --replace to delete them and copy)"
        )
    for table in reversed(library_tables()):  # the seeded rows of a fresh database go too
        target.execute(delete(table))
    report.replaced_rows = existing
    for table in library_tables():
        batch: list[dict[str, Any]] = []
        for row in _rows(source, table):
            batch.append(row)
            if len(batch) >= BATCH_ROWS:
                target.execute(table.insert(), batch)
                batch = []
        if batch:
            target.execute(table.insert(), batch)
    got = digests(target)
    for name, digest in wanted.items():
        if got.get(name) != digest:
            raise CopyVerificationError(
                f"table {name}: the target has {got.get(name)} after copying, the source {digest}; "
                "nothing was committed"
            )
    report.tables = {name: asdict(d) for name, d in got.items()}
    report.seconds = round(time.monotonic() - started, 3)
    return report
