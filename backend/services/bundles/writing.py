"""What every bundle export shares: the volume file a row names, and no half-written bundle left behind."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backend.services.errors import ConflictError
from backend.storage.blobs import BlobStore


@contextmanager
def removed_on_failure(out: Path) -> Iterator[None]:
    """Never leave a half-written bundle; a sample deleted during the export is a retryable conflict."""
    try:
        yield
    except FileNotFoundError as exc:
        out.unlink(missing_ok=True)
        raise ConflictError(
            f"a file was removed while the bundle was written ({Path(exc.filename or '').name}); "
            "retry the export"
        ) from None
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def stored_file(blobs: BlobStore, rel: str | None, what: str) -> Path:
    """The file a row names, or a 409 that says it is missing (a volume that needs ``fsck``)."""
    if not rel or not blobs.exists(rel):
        raise ConflictError(
            f"{what} is missing on the volume ({rel or 'no path'}); run `voicebox-worker volume fsck`"
        )
    return blobs.path(rel)
