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

from backend import __version__
from backend.cli.common import (
    EXIT_DB,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_command,
    emit,
)
from backend.cli.db import add_commands as db_commands
from backend.cli.db import open_library_database
from backend.cli_report import parse_args, report_failure
from backend.config import Settings, SettingsError, load_settings

log = logging.getLogger("voicebox.cli")


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
    report = fsck_volume(
        settings, open_library_database(settings), repair=args.repair, force=args.force
    )
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

    p = add_command(
        sub, "bootstrap", cmd_bootstrap, "prepare the volume: layout, lease, backup, migrate"
    )
    p.add_argument("--no-fsck", action="store_true")
    p = add_command(sub, "serve", cmd_serve, "run the API standalone (pods, laptops)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)

    db_commands(sub)

    vol = sub.add_parser("volume", help="the network volume").add_subparsers(
        dest="volume", required=True
    )
    add_command(vol, "status", cmd_volume_status, "layout, mount, revision, backups, lease")
    p = add_command(vol, "fsck", cmd_volume_fsck, "reconcile files and rows (every row)")
    p.add_argument("--repair", action="store_true")
    p.add_argument(
        "--force", action="store_true", help="with --repair: move every orphan, not a bounded share"
    )
    p = add_command(
        vol, "trash", cmd_volume_trash, "list files fsck moved to trash/, or restore them"
    )
    p.add_argument("action", nargs="?", choices=("list", "restore"), default="list")
    p.add_argument("entries", nargs="*", help="trash entries to restore")
    p.add_argument("--all", action="store_true", help="restore every entry")
    p = add_command(vol, "probe", cmd_volume_probe, "measure what this volume guarantees")
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
