"""``voicebox-worker db upgrade|current|history|downgrade|check|backup|restore|copy|adopt``: the library database.

Most commands work on the volume's SQLite file (through ``VolumeDatabase``'s lease, so a running worker never sees
a half-written file); with ``VOICEBOX_DATABASE_URL`` set, ``upgrade``, ``current``, ``check``, ``backup`` and
``copy`` speak to PostgreSQL and the file-only commands say to use PostgreSQL's own tools. Exit codes as in
``main.py``: 3 when the database needs attention.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from backend.cli.common import (
    EXIT_DB,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_command,
    emit,
)
from backend.config import Settings

if TYPE_CHECKING:
    from backend.db.interface import Database
    from backend.db.volume_db import VolumeDatabase


def open_library_database(settings: Settings) -> Database:
    """The library database the settings name (volume SQLite or PostgreSQL), expecting this image's head."""
    from backend.db.factory import open_database
    from migrations.runner import head_revision

    return open_database(settings, expected_revision=head_revision())


def _volume_database(settings: Settings) -> VolumeDatabase:
    """The volume's SQLite database, for the commands that work on its file (after ``_server_only``)."""
    from backend.db.volume_db import VolumeDatabase
    from migrations.runner import head_revision

    return VolumeDatabase(settings, expected_revision=head_revision())


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from volume_bootstrap.layout import ensure_layout
    from volume_bootstrap.migrate import migrate_volume

    ensure_layout(settings)
    result = migrate_volume(
        settings, open_library_database(settings), target=args.to, backed_up=args.backed_up
    )
    emit(args, result.as_dict(), f"{result.action}: {result.from_revision} -> {result.to_revision}")
    return EXIT_OK


def _shared_revision(settings: Settings) -> str | None:
    from backend.db.sqlite_files import read_revision

    if not settings.db_path.exists():
        raise CommandError(f"no database at {settings.db_path}; run `voicebox-worker bootstrap`")
    return read_revision(settings.db_path)


def _server_only(settings: Settings, what: str) -> None:
    """Commands that work on the volume's file say so instead of doing it when PostgreSQL is in use."""
    if settings.database_url:
        raise CommandError(
            f"`db {what}` works on the volume's SQLite database; with VOICEBOX_DATABASE_URL set use "
            "PostgreSQL's own tools (pg_dump / pg_restore, docs/architecture.md)",
            EXIT_USAGE,
        )


def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    from migrations.runner import head_revision, known_revisions

    current = (
        open_library_database(settings).current_revision()
        if settings.database_url
        else _shared_revision(settings)
    )
    head = head_revision()
    data = {
        "current": current,
        "head": head,
        "known": current in known_revisions(),
        "at_head": current == head,
    }
    emit(args, data, f"{current} (head {head})")
    return EXIT_OK if current in known_revisions() else EXIT_DB


def cmd_db_history(args: argparse.Namespace, settings: Settings) -> int:
    from migrations.runner import script_directory

    revs = [
        {"revision": r.revision, "down_revision": r.down_revision, "doc": r.doc}
        for r in script_directory().walk_revisions()
    ]
    emit(args, revs, "\n".join(f"{r['revision']}: {r['doc']}" for r in revs))
    return EXIT_OK


def cmd_db_downgrade(args: argparse.Namespace, settings: Settings) -> int:
    from backend.db.backups import backup_shared
    from backend.db.sqlite_files import read_revision
    from migrations.runner import downgrade_file

    _server_only(settings, "downgrade")
    db = _volume_database(settings)
    with db.write_file(check_schema=False) as work:
        if not work.path.exists():
            raise CommandError("no database to downgrade")
        before = read_revision(work.path)
        backup = backup_shared(settings, before)
        downgrade_file(work.path, args.revision)
        after = read_revision(work.path)
    emit(args, {"from": before, "to": after, "backup": backup.name}, f"{before} -> {after}")
    return EXIT_OK


def cmd_db_check(args: argparse.Namespace, settings: Settings) -> int:
    from backend.db.sqlite_files import integrity_check
    from migrations.runner import head_revision, schema_differences

    if settings.database_url:
        return _check_server(args, open_library_database(settings))
    db = _volume_database(settings)
    db.refresh(force=True)
    integrity = integrity_check(db.local_path)
    if integrity == "ok":
        from backend.db.search import fts_problem

        integrity = fts_problem(str(db.local_path)) or integrity
    diffs = [str(d) for d in schema_differences(db.local_path)] if integrity == "ok" else []
    current, head = db.local_revision, head_revision()
    ok = integrity == "ok" and current == head and not diffs
    data = {"ok": ok, "integrity": integrity, "revision": current, "head": head, "diffs": diffs}
    emit(args, data, "ok" if ok else json.dumps(data, indent=2))
    return EXIT_OK if ok else EXIT_DB


def _check_server(args: argparse.Namespace, database: Database) -> int:
    """``db check`` on PostgreSQL: revision and schema (the server keeps its own integrity)."""
    from backend.db.postgres import PostgresDatabase

    assert isinstance(database, PostgresDatabase)
    db = database
    from migrations.runner import compare_schema, head_revision

    current, head = db.current_revision(), head_revision()
    with db._translated(), db.engine.connect() as conn:
        diffs = [str(d) for d in compare_schema(conn)]
    ok = current == head and not diffs
    data = {"ok": ok, "database": db.describe(), "revision": current, "head": head, "diffs": diffs}
    emit(args, data, "ok" if ok else json.dumps(data, indent=2))
    return EXIT_OK if ok else EXIT_DB


def cmd_db_backup(args: argparse.Namespace, settings: Settings) -> int:
    from backend.db.backups import BackupRefusedError, take_backup

    if settings.database_url:
        from volume_bootstrap.migrate_pg import BackupRequiredError, pg_dump_backup

        revision = open_library_database(settings).current_revision()
        try:
            path = pg_dump_backup(settings, revision)
        except BackupRequiredError as exc:
            raise CommandError(f"{exc}; nothing was saved", EXIT_FAILED) from None
        data = {"backup": path.name, "size": path.stat().st_size, "revision": revision}
        emit(args, data, f"{path.name} (pg_dump, {path.stat().st_size} bytes)")
        return EXIT_OK

    try:
        info = take_backup(settings, settings.db_path, _shared_revision(settings))
    except BackupRefusedError as exc:
        raise CommandError(str(exc), EXIT_DB) from None
    data = {"backup": info.name, "size": info.facts.size, "rows": info.facts.rows}
    emit(args, data, f"{info.name} ({info.facts.library_rows} rows)")
    return EXIT_OK


def _list_backups(args: argparse.Namespace, settings: Settings) -> int:
    """``db restore`` without a name: the backup set, newest first, with what each holds."""
    from backend.db.backups import inspect_backup, list_backups

    infos = [inspect_backup(path) for path in list_backups(settings)]
    lines = [
        f"{i.name}  {i.facts.size} bytes  rows: "
        + (", ".join(f"{k}={v}" for k, v in i.facts.rows.items()) or "none")
        + ("" if i.facts.good else f"  NOT RESTORABLE ({i.facts.integrity})")
        for i in infos
    ]
    emit(args, {"backups": [i.as_dict() for i in infos]}, "\n".join(lines) or "no backups")
    return EXIT_OK


def cmd_db_restore(args: argparse.Namespace, settings: Settings) -> int:
    import shutil

    from backend.db.backups import inspect_database
    from migrations.runner import known_revisions

    _server_only(settings, "restore")
    if not args.file:
        return _list_backups(args, settings)
    source = Path(args.file)
    if not source.is_file():
        source = settings.backups_dir / args.file
    if not source.is_file():
        raise CommandError(
            f"no backup {args.file!r} (looked in {settings.backups_dir})", EXIT_USAGE
        )
    facts = inspect_database(source)
    if not facts.good:
        raise CommandError(f"{source.name} is not restorable: {facts.integrity}", EXIT_DB)
    revision = facts.revision
    if revision not in known_revisions():
        raise CommandError(
            f"{source.name} is at revision {revision!r}, unknown to this image", EXIT_DB
        )
    db = _volume_database(settings)
    settings.db_dir.mkdir(parents=True, exist_ok=True)
    with db.write_file(
        check_schema=False, pull=False
    ) as work:  # the current file may be unreadable
        shutil.copyfile(source, work.path)
    emit(args, {"restored": source.name, "revision": revision}, f"restored {source.name}")
    return EXIT_OK


def cmd_db_copy(args: argparse.Namespace, settings: Settings) -> int:
    from volume_bootstrap.library_copy import copy_from_postgres, copy_to_postgres

    if bool(args.to) == bool(args.source):
        raise CommandError("give exactly one of --to URL or --from URL", EXIT_USAGE)
    if args.to:
        report = copy_to_postgres(settings, args.to, replace=args.replace)
    else:
        report = copy_from_postgres(settings, args.source, replace=args.replace)
    rows = sum(t["rows"] for t in report.tables.values())
    emit(
        args, report.as_dict(), f"{report.action}: {rows} rows, {report.source} -> {report.target}"
    )
    return EXIT_OK


def cmd_db_adopt(args: argparse.Namespace, settings: Settings) -> int:
    from volume_bootstrap.adopt import adopt_data_dir

    report = adopt_data_dir(settings, Path(args.data_dir), move=args.move)
    emit(args, report, json.dumps(report, indent=2, default=str))
    return EXIT_OK


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``db ...`` on the main parser; handlers are ``handler(args, settings) -> int``."""
    db = subparsers.add_parser("db", help="the volume database").add_subparsers(
        dest="db", required=True
    )

    p = add_command(db, "upgrade", cmd_db_upgrade, "migrate to head (or --to REV), with a backup")
    p.add_argument("--to", default="head")
    p.add_argument(
        "--backed-up",
        action="store_true",
        help="PostgreSQL: you took a pg_dump yourself; upgrade without one from this worker",
    )
    add_command(db, "current", cmd_db_current, "revision of the volume database")
    add_command(db, "history", cmd_db_history, "revisions this image knows")
    p = add_command(db, "downgrade", cmd_db_downgrade, "downgrade to REV (backup first)")
    p.add_argument("revision")
    add_command(db, "check", cmd_db_check, "integrity, revision and schema check")
    add_command(db, "backup", cmd_db_backup, "copy the database into db/backups")
    p = add_command(
        db, "restore", cmd_db_restore, "publish a backup (no name: list them with row counts)"
    )
    p.add_argument("file", nargs="?", default=None, help="a name in db/backups or a path")
    p = add_command(
        db, "copy", cmd_db_copy, "copy the library volume SQLite <-> PostgreSQL, verified"
    )
    p.add_argument("--to", default=None, metavar="URL", help="volume SQLite -> this PostgreSQL")
    p.add_argument(
        "--from", dest="source", default=None, metavar="URL", help="this PostgreSQL -> volume"
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="delete the target's other rows first (one transaction)",
    )
    p = add_command(db, "adopt", cmd_db_adopt, "take a Voicebox data directory into the volume")
    p.add_argument("data_dir")
    p.add_argument("--move", action="store_true", help="move files instead of copying")
