"""``voicebox-worker profiles export|import``: move voice libraries between volumes from a shell.

Why a CLI beside the HTTP routes: a library can be far larger than RunPod's payload caps, and an operator with
the volume mounted (a pod, a laptop with the volume synced) can move it directly. Progress goes to stderr, the
result to stdout (``--json`` for scripts).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from backend.cli.common import emit
from backend.config import Settings


class ProgressBar:
    """A one-line text bar on stderr, redrawn at most every 0.1 s (cheap even for 10,000 items)."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self._last = 0.0
        self._drawn = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        filled = int(self.width * done / total) if total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{stage:>8} [{bar}] {done}/{total}")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _services(settings: Settings):
    from backend.services.container import Services

    return Services.create(settings)


def _find_profile(services: Any, ref: str) -> str:
    """A profile id from an id or an exact name."""
    from sqlalchemy import select

    from backend.db.models import Profile
    from backend.services.errors import NotFoundError

    with services.db.read() as session:
        if session.get(Profile, ref) is not None:
            return ref
        found = session.scalar(select(Profile.id).where(Profile.name == ref))
    if found is None:
        raise NotFoundError(f"no profile with id or name {ref!r}")
    return str(found)


def cmd_profiles_export(args: argparse.Namespace, settings: Settings) -> int:
    from backend.cli.common import CommandError
    from backend.services.errors import ServiceError

    out = Path(args.out)
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; choose another name or pass --force")
    if not args.all and not args.profile:
        raise CommandError(
            "name a profile with --profile ID_OR_NAME, or export everything with --all"
        )
    services = _services(settings)
    bar = ProgressBar()
    try:
        if args.all:
            exported = services.bundles.export_library(include_history=args.history, progress=bar)
        else:
            exported = services.bundles.export_profile(
                _find_profile(services, args.profile), args.format
            )
        bar.close()
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(exported.path), out)
    except ServiceError as exc:
        raise CommandError(exc.message) from None
    finally:
        bar.close()
        services.close()
    data = {
        "out": str(out),
        "size_bytes": out.stat().st_size,
        "profiles": exported.profiles,
        "samples": exported.samples,
        "generations": exported.generations,
    }
    emit(
        args,
        data,
        f"wrote {out} ({data['size_bytes']} bytes): {exported.profiles} profiles, "
        f"{exported.samples} samples, {exported.generations} generations",
    )
    return 0


def cmd_profiles_import(args: argparse.Namespace, settings: Settings) -> int:
    from backend.cli.common import CommandError
    from backend.services.errors import ServiceError

    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path} is not a file")
    services = _services(settings)
    bar = ProgressBar()
    try:
        kind = services.bundles.detect_kind(path)
        if kind == "library":
            result = services.bundles.import_library(path, progress=bar)
            bar.close()
            data: dict[str, Any] = {"kind": kind, **result.__dict__, "message": result.summary()}
            text = result.summary()
        elif kind == "profile":
            info = services.bundles.import_profile(path)
            data = {
                "kind": kind,
                "id": info.profile.id,
                "name": info.profile.name,
                "samples": info.sample_count,
            }
            text = f"imported profile {info.profile.name!r} ({info.profile.id}) with {info.sample_count} samples"
        else:
            imported = services.bundles.import_generation(path)
            row = imported.generation
            data = {
                "kind": kind,
                "id": row.id,
                "profile_id": row.profile_id,
                "profile_name": row.profile_name,
            }
            text = f"imported generation {row.id} (profile: {row.profile_name or 'none'})"
    except ServiceError as exc:
        raise CommandError(exc.message) from None
    finally:
        bar.close()
        services.close()
    emit(args, data, text)
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``profiles export|import`` on the main parser; handlers are ``handler(args, settings)``."""
    group = subparsers.add_parser(
        "profiles", help="export and import voice profiles"
    ).add_subparsers(dest="profiles", required=True)
    p = group.add_parser("export", help="write a profile (or --all: the library) to a bundle")
    p.add_argument("out", help="the bundle file to write")
    p.add_argument("--all", action="store_true", help="every profile, in one library bundle")
    p.add_argument("--history", action="store_true", help="with --all: include generations")
    p.add_argument("--profile", help="the profile's id or exact name (without --all)")
    p.add_argument("--format", default="1.1", choices=("1.0", "1.1"), help="profile bundle version")
    p.add_argument("--force", action="store_true", help="overwrite OUT")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_profiles_export)
    p = group.add_parser("import", help="import a profile, generation or library bundle")
    p.add_argument("file", help="the bundle file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_profiles_import)
