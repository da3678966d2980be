"""The ``voicebox-worker`` command.

Exit codes scripts can rely on: 0 success; 1 the operation failed (message on stderr); 2 bad usage; 3 the
database needs attention (corrupt, at an unknown revision, missing or empty while the volume holds a library, or
``db check`` found a difference).
Every command that reports something takes ``--json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from backend import __version__
from backend.cli.common import (
    EXIT_DB,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Handler,
    emit,
)
from backend.cli_report import parse_args, report_failure
from backend.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from backend.db.interface import Database
    from backend.db.volume_db import VolumeDatabase

log = logging.getLogger("voicebox.cli")


def _database(settings: Settings) -> Database:
    from backend.db.factory import open_database
    from migrations.runner import head_revision

    return open_database(settings, expected_revision=head_revision())


def _volume_database(settings: Settings) -> VolumeDatabase:
    """The volume's SQLite database, for the commands that work on its file (after ``_server_only``)."""
    from backend.db.volume_db import VolumeDatabase
    from migrations.runner import head_revision

    return VolumeDatabase(settings, expected_revision=head_revision())


# ---------------------------------------------------------------- bootstrap / serve
def cmd_bootstrap(args: argparse.Namespace, settings: Settings) -> int:
    from volume_bootstrap.bootstrap import bootstrap

    report = bootstrap(settings, run_fsck=not args.no_fsck)
    print(report.as_json())
    return EXIT_OK


def _warn_missing_models(settings: Settings) -> None:
    """``serve`` loads models on first use: say now, not in the first generate's error, what is missing."""
    from backend.engines.hfcache import check_snapshot, not_downloaded_hint

    for repo in (settings.tts_model, settings.stt_model):
        if repo.strip().lower() != "fake" and not check_snapshot(settings.hf_home, repo).complete:
            print(
                f"voicebox-worker: warning: {not_downloaded_hint(repo)}",
                file=sys.stderr,
                flush=True,
            )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from backend.app import create_app
    from backend.services.container import Services
    from volume_bootstrap.bootstrap import bootstrap

    settings = settings.with_overrides(
        host=args.host or settings.host, port=args.port or settings.port
    )
    print(bootstrap(settings).as_json(), flush=True)
    _warn_missing_models(settings)
    app = create_app(settings, services=Services.for_worker(settings))
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return EXIT_OK


# ---------------------------------------------------------------- db
def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from volume_bootstrap.layout import ensure_layout
    from volume_bootstrap.migrate import migrate_volume

    ensure_layout(settings)
    result = migrate_volume(settings, _database(settings), target=args.to, backed_up=args.backed_up)
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
        _database(settings).current_revision()
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
        return _check_server(args, _database(settings))
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

        revision = _database(settings).current_revision()
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


# ---------------------------------------------------------------- volume
def cmd_volume_status(args: argparse.Namespace, settings: Settings) -> int:
    from backend.db.backups import list_backups
    from backend.db.sqlite_files import read_revision
    from backend.storage.mounts import mount_info
    from migrations.runner import head_revision
    from volume_bootstrap.layout import LAYOUT

    info = mount_info(settings.volume)
    data: dict[str, object] = {
        "volume": str(settings.volume),
        "volume_source": settings.volume_source,
        "mount": info.as_dict() if info else None,
        "layout_missing": [rel for rel in LAYOUT if not (settings.volume / rel).is_dir()],
        "database": str(settings.db_path) if settings.db_path.exists() else None,
        "revision": read_revision(settings.db_path) if settings.db_path.exists() else None,
        "head": head_revision(),
        "database_bytes": settings.db_path.stat().st_size if settings.db_path.exists() else 0,
        "backups": [p.name for p in list_backups(settings)],
        "lease_marker": settings.lease_path.read_text(errors="replace").strip()
        if settings.lease_path.exists()
        else None,
    }
    emit(args, data)
    return EXIT_OK


def cmd_volume_fsck(args: argparse.Namespace, settings: Settings) -> int:
    from volume_bootstrap.fsck import fsck_volume

    if args.force and not args.repair:
        raise CommandError(
            "--force only lifts the orphan bound of --repair; add --repair", EXIT_USAGE
        )
    report = fsck_volume(settings, _database(settings), repair=args.repair, force=args.force)
    emit(args, report.as_dict())
    return EXIT_OK


def cmd_volume_trash(args: argparse.Namespace, settings: Settings) -> int:
    """``volume trash`` lists what fsck moved aside; ``volume trash restore ENTRY...|--all`` puts it back."""
    from backend.storage.blobs import UnsafePathError
    from backend.storage.trash import Trash

    trash = Trash(settings)
    if args.action == "list":
        entries = trash.entries()
        lines = [f"{e.entry}  {e.rel or '(unknown origin)'}  {e.size} bytes" for e in entries]
        emit(
            args, {"entries": [e.as_dict() for e in entries]}, "\n".join(lines) or "trash is empty"
        )
        return EXIT_OK
    names = [e.entry for e in trash.entries() if e.rel] if args.all else args.entries
    if not names:
        raise CommandError(
            "name the entries to restore (see `volume trash list`) or pass --all", EXIT_USAGE
        )
    restored, failed = [], {}
    for name in names:
        try:
            restored.append(trash.restore(name))
        except (UnsafePathError, FileExistsError) as exc:
            failed[name] = str(exc)
    emit(args, {"restored": restored, "failed": failed}, f"restored {len(restored)} file(s)")
    return EXIT_OK if not failed else EXIT_FAILED


def cmd_volume_probe(args: argparse.Namespace, settings: Settings) -> int:
    from backend.storage.probe import run_probe
    from volume_bootstrap.layout import ensure_layout

    ensure_layout(settings)
    report = run_probe(settings, quick=args.quick, peer_wait=args.peer_wait)
    emit(args, report.as_dict())
    return EXIT_OK if "BROKEN" not in json.dumps(report.verdict) else EXIT_DB


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebox-worker", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=None, help="override VOICEBOX_LOG_LEVEL")
    parser.add_argument("--version", action="version", version=f"voicebox-worker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(parent, name: str, handler: Handler, help_text: str):
        p = parent.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=handler)
        return p

    p = add(sub, "bootstrap", cmd_bootstrap, "prepare the volume: layout, lease, backup, migrate")
    p.add_argument("--no-fsck", action="store_true")
    p = add(sub, "serve", cmd_serve, "run the API standalone (pods, laptops)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)

    db = sub.add_parser("db", help="the volume database").add_subparsers(dest="db", required=True)
    p = add(db, "upgrade", cmd_db_upgrade, "migrate to head (or --to REV), with a backup")
    p.add_argument("--to", default="head")
    p.add_argument(
        "--backed-up",
        action="store_true",
        help="PostgreSQL: you took a pg_dump yourself; upgrade without one from this worker",
    )
    add(db, "current", cmd_db_current, "revision of the volume database")
    add(db, "history", cmd_db_history, "revisions this image knows")
    p = add(db, "downgrade", cmd_db_downgrade, "downgrade to REV (backup first)")
    p.add_argument("revision")
    add(db, "check", cmd_db_check, "integrity, revision and schema check")
    add(db, "backup", cmd_db_backup, "copy the database into db/backups")
    p = add(db, "restore", cmd_db_restore, "publish a backup (no name: list them with row counts)")
    p.add_argument("file", nargs="?", default=None, help="a name in db/backups or a path")
    p = add(db, "copy", cmd_db_copy, "copy the library volume SQLite <-> PostgreSQL, verified")
    p.add_argument("--to", default=None, metavar="URL", help="volume SQLite -> this PostgreSQL")
    p.add_argument(
        "--from", dest="source", default=None, metavar="URL", help="this PostgreSQL -> volume"
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="delete the target's other rows first (one transaction)",
    )
    p = add(db, "adopt", cmd_db_adopt, "take a Voicebox data directory into the volume")
    p.add_argument("data_dir")
    p.add_argument("--move", action="store_true", help="move files instead of copying")

    vol = sub.add_parser("volume", help="the network volume").add_subparsers(
        dest="volume", required=True
    )
    add(vol, "status", cmd_volume_status, "layout, mount, revision, backups, lease")
    p = add(vol, "fsck", cmd_volume_fsck, "reconcile files and rows (every row)")
    p.add_argument("--repair", action="store_true")
    p.add_argument(
        "--force", action="store_true", help="with --repair: move every orphan, not a bounded share"
    )
    p = add(vol, "trash", cmd_volume_trash, "list files fsck moved to trash/, or restore them")
    p.add_argument("action", nargs="?", choices=("list", "restore"), default="list")
    p.add_argument("entries", nargs="*", help="trash entries to restore")
    p.add_argument("--all", action="store_true", help="restore every entry")
    p = add(vol, "probe", cmd_volume_probe, "measure what this volume guarantees")
    p.add_argument("--quick", action="store_true", help="fewer rounds, 1 MB publish only")
    p.add_argument(
        "--peer-wait", type=float, default=0.0, help="seconds to wait for a second worker's probe"
    )

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    """The other command groups: models, profile bundles, the remote client."""
    from backend.cli.bundles import add_commands as bundle_commands
    from backend.cli.models import add_commands as model_commands
    from backend.client.cli import add_commands as client_commands

    return [model_commands, bundle_commands, client_commands]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        return report_failure(args, f"bad setting: {exc}", EXIT_USAGE, "settings")
    logging.basicConfig(
        level=(args.log_level or settings.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if (args.log_level or settings.log_level).upper() != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)
    from backend.db.errors import (
        DatabaseCorruptError,
        DatabaseError,
        LibraryMissingError,
        SchemaMismatchError,
    )

    try:
        return int(args.handler(args, settings))
    except CommandError as exc:
        return report_failure(args, str(exc), exc.code, "command")
    except (SchemaMismatchError, DatabaseCorruptError, LibraryMissingError) as exc:
        return report_failure(args, str(exc), EXIT_DB, type(exc).__name__)
    except DatabaseError as exc:
        return report_failure(args, str(exc), EXIT_FAILED, type(exc).__name__)
    except (
        OSError,
        ValueError,
    ) as exc:  # a folder that cannot be read, a file that is not what it says
        log.debug("command failed", exc_info=True)
        return report_failure(args, f"{type(exc).__name__}: {exc}", EXIT_FAILED, type(exc).__name__)


if __name__ == "__main__":
    sys.exit(main())
