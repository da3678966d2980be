"""The one durable-write path: temp file → fsync → ``os.replace`` → fsync(dir).

Why one module: a file on the network volume is read by other workers and must be either absent or whole, even
if this worker dies mid-write or the host loses power. That needs all four steps, in order: the data reaches the
disk before the rename (fsync of the temp file), the rename is atomic (``os.replace`` within one filesystem, so
the temp file lives on the same volume, in ``voicebox/.tmp``), and the rename itself reaches the disk (fsync of
the folder). Every writer of volume files (blobs, exports, the prompt cache, the database snapshot) uses these
helpers instead of spelling the steps out again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from types import TracebackType


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable; some filesystems refuse to open directories, which we tolerate
    (the rename itself is still atomic there)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    """Flush a file that is already written and closed (a staged upload) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, target: Path, *, synced: bool = False) -> None:
    """Put the finished temp file ``tmp`` at ``target`` durably: fsync it (unless ``synced``), replace,
    fsync the target's folder. ``tmp`` must be on the same filesystem as ``target``."""
    if not synced:
        fsync_path(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)
    fsync_dir(target.parent)


class AtomicFile:
    """A temp file in ``tmp_dir`` that becomes its target only when ``commit`` runs.

    Use as a context manager (an exception, or leaving without ``commit``, removes the temp file) or call
    ``abort`` yourself. ``write`` counts the bytes in ``size``.
    """

    def __init__(self, tmp_dir: Path, *, prefix: str = "", suffix: str = ".part") -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=tmp_dir, prefix=prefix, suffix=suffix)
        self.path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self.size = 0
        self.committed = False

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.size += len(chunk)

    def commit(self, target: Path, *, exclusive: bool = False) -> None:
        """Flush, fsync and move the file to ``target`` (``exclusive``: refuse to replace an existing one)."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if exclusive and target.exists():
                raise FileExistsError(f"{target.name} already exists")
            publish(self.path, target, synced=True)
        except BaseException:
            self.abort()
            raise
        self.committed = True

    def abort(self) -> None:
        """Close and remove the temp file (safe to call twice, and after a commit)."""
        try:
            self._file.close()
        finally:
            if not self.committed:
                with contextlib.suppress(OSError):
                    self.path.unlink()

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.abort()


def write_bytes(target: Path, data: bytes, tmp_dir: Path, *, prefix: str = "") -> None:
    """Write ``data`` to ``target`` durably through a temp file in ``tmp_dir``."""
    with AtomicFile(tmp_dir, prefix=prefix) as out:
        out.write(data)
        out.commit(target)
