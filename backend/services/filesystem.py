"""Voicebox's ``/health/filesystem``: do the volume's folders exist and can this worker write them?

Cheap on purpose (``stat``/``access`` and one ``statvfs``, nothing written), so the app may call it at will.
Folders are named relative to the volume root: answers never carry server paths.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from backend.config import Settings


def _check(path: Path, label: str) -> dict[str, Any]:
    exists = path.is_dir()
    writable = exists and os.access(path, os.W_OK | os.X_OK)
    error = None if writable else ("missing" if not exists else "not writable")
    return {"path": label, "exists": exists, "writable": writable, "error": error}


def filesystem_health(settings: Settings) -> dict[str, Any]:
    """``{healthy, disk_free_mb, disk_total_mb, directories: [{path, exists, writable, error}]}``."""
    root = settings.volume
    folders = [
        settings.db_path.parent,
        settings.data_dir / "profiles",
        settings.data_dir / "generations",
        settings.cache_dir,
        settings.exports_dir,
        settings.imports_dir,
        settings.tmp_dir,
        settings.hf_home,
    ]
    directories = []
    for folder in folders:
        try:
            label = folder.relative_to(root).as_posix()
        except ValueError:
            label = folder.name
        directories.append(_check(folder, label))
    free: float | None = None
    total: float | None = None
    try:
        usage = shutil.disk_usage(root)
        free, total = round(usage.free / 2**20, 1), round(usage.total / 2**20, 1)
    except OSError:
        pass
    return {
        "healthy": all(d["writable"] for d in directories),
        "disk_free_mb": free,
        "disk_total_mb": total,
        "directories": directories,
    }
