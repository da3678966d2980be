"""Atomic files on the volume, addressed by paths relative to ``<volume>/voicebox``.

Why: a worker can be SIGKILLed at any instant and a peer may read the same folder. Every write goes to a temp file
in ``voicebox/.tmp/`` → fsync → ``os.replace`` → fsync(dir), so a reader sees the whole file or none. Names are
never reused, and relative paths mean the database survives the volume being mounted elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from backend.config import Settings
from backend.storage.atomic import AtomicFile, publish
from backend.storage.paths import UnsafePathError as UnsafePathError
from backend.storage.paths import no_links_below, safe_relative


@dataclass(frozen=True)
class StoredBlob:
    rel_path: str
    size: int
    sha256: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    def __init__(self, settings: Settings) -> None:
        self.root = settings.data_dir
        self.tmp_dir = settings.tmp_dir
        self.trash_dir = settings.trash_dir
        self.settings = settings

    def path(self, rel: str) -> Path:
        """The file ``rel`` names under ``voicebox/``; never through a symbolic link (``no_links_below``)."""
        return no_links_below(self.root, safe_relative(rel).parts)

    def _entry(self, rel: str) -> Path:
        """The directory entry ``rel`` itself, which may be a link (removing or moving a link is safe, and
        fsck must be able to clear one away); its parent folders still may not be links."""
        parts = safe_relative(rel).parts
        return no_links_below(self.root, parts[:-1]) / parts[-1]

    def exists(self, rel: str) -> bool:
        """A regular file (not a link) is at ``rel``."""
        try:
            return self.path(rel).is_file()
        except UnsafePathError:
            return False

    def open(self, rel: str) -> BinaryIO:
        fd = os.open(self.path(rel), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        return os.fdopen(fd, "rb")

    def read_bytes(self, rel: str) -> bytes:
        return self.path(rel).read_bytes()

    def new_tmp_path(self, suffix: str = "") -> Path:
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return self.tmp_dir / f"{uuid.uuid4().hex}{suffix}.part"

    def write_bytes(self, rel: str, data: bytes) -> StoredBlob:
        return self.write_chunks(rel, [data])

    def write_chunks(self, rel: str, chunks: Iterable[bytes]) -> StoredBlob:
        target = self.path(rel)
        digest = hashlib.sha256()
        with AtomicFile(self.tmp_dir) as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
            out.commit(target)
        return StoredBlob(rel, out.size, digest.hexdigest())

    def write_file(self, rel: str, source: Path, *, move: bool = False) -> StoredBlob:
        """Store a file already on disk; ``move`` when it is a staged temp file on the same volume."""
        if move and source.parent == self.tmp_dir:
            digest = sha256_file(source)
            size = source.stat().st_size
            publish(source, self.path(rel))
            return StoredBlob(rel, size, digest)
        with open(source, "rb") as handle:
            return self.write_chunks(rel, iter(lambda: handle.read(1024 * 1024), b""))

    def delete(self, rel: str | None) -> bool:
        if not rel:
            return False
        try:
            self._entry(rel).unlink()
        except FileNotFoundError:
            return False
        return True

    def delete_tree(self, rel: str) -> None:
        shutil.rmtree(self.path(rel), ignore_errors=True)

    def move_to_trash(self, rel: str) -> str:
        """Move a file into ``trash/`` keeping its path (restorable); returns the trash entry's name."""
        from backend.storage.trash import Trash

        return Trash(self.settings).put(rel)
