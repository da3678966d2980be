"""Relative paths on the volume that cannot leave the data folder or follow a planted link.

Why a module of its own: the blob store and the trash both address files by volume-relative paths and must
refuse the same unsafe ones; keeping the checks here lets the trash use them without importing the blob store
(which itself moves files into the trash).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path, PurePosixPath


class UnsafePathError(ValueError):
    """A relative path that would leave the data folder (absolute, ``..``, backslashes)."""


def safe_relative(rel: str) -> PurePosixPath:
    if not rel or "\\" in rel or "\x00" in rel:
        raise UnsafePathError(f"unsafe path {rel!r}")
    path = PurePosixPath(rel)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts):
        raise UnsafePathError(f"unsafe path {rel!r}")
    return path


def no_links_below(root: Path, parts: Sequence[str]) -> Path:
    """``root/parts``, refusing a path that goes through a symbolic link below ``root``.

    Why: a link planted on the volume (``exports/x -> /etc/passwd``) would otherwise be followed by every open,
    stat and ``FileResponse``: each existing component under ``root`` is ``lstat``-ed (the check ``O_NOFOLLOW``
    makes, for every component and not only the last), and what does not exist yet (a file about to be
    written) cannot be a link. ``root``'s own ancestors are the operator's business (a volume mounted through a
    link is fine). Costs one ``lstat`` per component below ``root``.
    """
    path = root
    for part in parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            break
        if stat.S_ISLNK(mode):
            rel = "/".join(parts)
            raise UnsafePathError(
                f"{rel!r} goes through a symbolic link on the volume (not a regular file)"
            )
    return root.joinpath(*parts)
