"""``voicebox/trash``: where fsck puts files no row names, kept for a while and restorable.

Why keep and not delete: a file with no row is usually a leftover of a killed write, but it can also be a real
sample whose row is gone (a database restored from an older backup). So a trashed file keeps its original path
(``trash/<entry>/<path relative to voicebox/>``) and can be put back with ``voicebox-worker volume trash
restore``; only entries older than ``VOICEBOX_TRASH_DAYS`` are deleted, by fsck.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass

from backend.config import Settings
from backend.storage.paths import UnsafePathError, no_links_below, safe_relative


@dataclass(frozen=True)
class TrashEntry:
    entry: str  # the folder under trash/
    rel: (
        str | None
    )  # where the file lived, relative to voicebox/ (None for an entry of an older layout)
    trashed_at: float
    size: int

    def as_dict(self) -> dict[str, object]:
        return {
            "entry": self.entry,
            "path": self.rel,
            "trashed_at": self.trashed_at,
            "size": self.size,
        }


class Trash:
    def __init__(self, settings: Settings) -> None:
        self.data_dir = settings.data_dir
        self.root = settings.trash_dir

    def put(self, rel: str) -> str:
        """Move ``voicebox/<rel>`` into a new entry; returns the entry name. The entry's time is now."""
        clean = safe_relative(rel)
        entry = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"
        target = self.root / entry / clean
        target.parent.mkdir(parents=True, exist_ok=True)
        # the entry itself may be a link (moving a link is safe); its folders may not be
        os.replace(no_links_below(self.data_dir, clean.parts[:-1]) / clean.parts[-1], target)
        os.utime(self.root / entry)  # retention counts from the move, not from the file's own age
        return entry

    def entries(self) -> list[TrashEntry]:
        """Every entry, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for top in self.root.iterdir():
            try:
                trashed_at = top.stat().st_mtime
            except FileNotFoundError:
                continue
            if top.is_dir():
                files = [p for p in top.rglob("*") if p.is_file()]
                rel = files[0].relative_to(top).as_posix() if len(files) == 1 else None
                size = sum(p.stat().st_size for p in files)
            else:
                rel, size = None, top.stat().st_size
            found.append(TrashEntry(top.name, rel, trashed_at, size))
        return sorted(found, key=lambda e: (e.trashed_at, e.entry))

    def restore(self, entry: str) -> str:
        """Put an entry's file back where it was; refuses to overwrite a file that is there now."""
        match = next((e for e in self.entries() if e.entry == entry), None)
        if match is None or match.rel is None:
            raise UnsafePathError(f"no restorable trash entry {entry!r}")
        clean = safe_relative(match.rel)
        target = self.data_dir / clean
        if target.exists():
            raise FileExistsError(f"{match.rel} exists again; remove it first to restore {entry}")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / entry / clean, target)
        shutil.rmtree(self.root / entry, ignore_errors=True)
        return match.rel

    def purge(self, older_than_seconds: float, limit: int | None = None) -> list[str]:
        """Delete entries trashed longer ago than ``older_than_seconds`` (at most ``limit``)."""
        cutoff = time.time() - older_than_seconds
        removed: list[str] = []
        for item in self.entries():
            if item.trashed_at >= cutoff or (limit is not None and len(removed) >= limit):
                break
            path = self.root / item.entry
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(item.entry)
        return removed
