"""Generation versions (upstream Voicebox's): the clean original, effects-processed copies, and other takes.

Invariants (every write unit below keeps them): a completed generation has at least one version; exactly one is
``is_default``; ``generations.audio_path`` (and its size, hash, duration) is the default version's, so every
reader that knows only the generation keeps working. The last version cannot be deleted; deleting the default
promotes the oldest remaining one (upstream's rule).

Files: a version's file is written **before** its row, under a name never used before
(``generations/<YYYY-MM>/<generation>-<version8>.wav``), atomically (temp file → fsync → rename → fsync(dir),
``BlobStore``); then one write unit adds the row. A kill in between leaves no row and at most an unreferenced
file, which ``volume fsck`` moves to trash after its grace period — never a row without its file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import Generation, GenerationVersion, new_id, utcnow
from backend.services.common import write_retrying
from backend.services.errors import NotFoundError, ValidationError
from backend.statuses import GenerationStatus
from backend.storage import effects as fx
from backend.storage.blobs import StoredBlob

if TYPE_CHECKING:
    from backend.db.interface import Database
    from backend.storage.blobs import BlobStore


def version_path(gen_id: str, version_id: str) -> str:
    return f"generations/{utcnow():%Y-%m}/{gen_id}-{version_id[:8]}.wav"


def add_version(
    session: Session,
    row: Generation,
    stored: StoredBlob,
    *,
    label: str,
    duration: float | None,
    default: bool,
    effects_chain: list[dict[str, Any]] | None = None,
    source_version_id: str | None = None,
    version_id: str | None = None,
    seed: int | None = None,
) -> GenerationVersion:
    """Add a version row for a file already durable; as the default, the generation points at it."""
    version = GenerationVersion(
        id=version_id or new_id(),
        generation_id=row.id,
        label=label[:200],
        audio_path=stored.rel_path,
        effects_chain=fx.dump(effects_chain),
        source_version_id=source_version_id,
        is_default=False,
        seed=seed,
        duration=duration,
        sha256=stored.sha256,
        size_bytes=stored.size,
        created_at=utcnow(),
    )
    session.add(version)
    if default or not any(v.is_default for v in row.versions):
        make_default(row, version)
    row.versions.append(version)
    return version


def make_default(row: Generation, version: GenerationVersion) -> None:
    for other in row.versions:
        other.is_default = other is version
    version.is_default = True
    row.audio_path = version.audio_path
    row.sha256 = version.sha256
    row.size_bytes = version.size_bytes
    if version.duration is not None:
        row.duration = version.duration


def next_label(row: Generation, prefix: str) -> str:
    taken = {v.label for v in row.versions}
    n = len(row.versions) + 1
    while f"{prefix}-{n}" in taken:
        n += 1
    return f"{prefix}-{n}"


@dataclass(frozen=True)
class Preview:
    path: Path
    filename: str


class VersionService:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    # ------------------------------------------------------------------ reads
    @staticmethod
    def _generation(session: Session, gen_id: str) -> Generation:
        row = session.get(Generation, gen_id)
        if row is None:
            raise NotFoundError(f"generation {gen_id!r} not found")
        return row

    def list(self, gen_id: str) -> list[GenerationVersion]:
        with self.db.read() as session:
            return list(self._generation(session, gen_id).versions)

    def get(self, version_id: str) -> GenerationVersion:
        with self.db.read() as session:
            version = session.get(GenerationVersion, version_id)
            if version is None:
                raise NotFoundError(f"version {version_id!r} not found")
            return version

    def audio_path(self, version_id: str) -> tuple[GenerationVersion, Path]:
        version = self.get(version_id)
        if not self.blobs.exists(version.audio_path):
            raise NotFoundError(
                f"the audio file of version {version_id!r} is missing on the volume"
            )
        return version, self.blobs.path(version.audio_path)

    def _source(self, gen_id: str, source_version_id: str | None) -> tuple[str, str | None]:
        """The file effects start from: the named version (of this generation), else the clean one."""
        with self.db.read() as session:
            row = self._generation(session, gen_id)
            if row.status != GenerationStatus.COMPLETED or not row.audio_path:
                raise ValidationError(
                    f"generation {gen_id!r} is {row.status}; effects need a completed generation"
                )
            if source_version_id:
                match = [v for v in row.versions if v.id == source_version_id]
                if not match:
                    raise ValidationError(
                        f"source_version_id {source_version_id!r} is not a version of generation "
                        f"{gen_id!r}"
                    )
                return match[0].audio_path, match[0].id
            clean = [v for v in row.versions if not fx.parse_stored(v.effects_chain)]
            if clean:
                return clean[0].audio_path, clean[0].id
            return row.audio_path, None

    # ------------------------------------------------------------------ effects
    def preview(self, gen_id: str, chain: object) -> Preview:
        """The chain applied to the clean audio into a temp file; nothing is stored (the caller sends it)."""
        checked = fx.validate_chain(_as_list(chain))
        source_rel, _ = self._source(gen_id, None)
        tmp = self.blobs.new_tmp_path(".wav")
        try:
            fx.apply_to_file(self.blobs.path(source_rel), tmp, checked)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Preview(tmp, f"preview_{gen_id}.wav")

    def apply_effects(
        self,
        gen_id: str,
        chain: object,
        *,
        label: str | None = None,
        set_as_default: bool = False,
        source_version_id: str | None = None,
    ) -> GenerationVersion:
        """A new version: the chain on the source version, file first, then its row (see the module)."""
        checked = fx.validate_chain(_as_list(chain))
        if label is not None and len(label) > 200:
            raise ValidationError("label is longer than 200 characters")
        source_rel, source_id = self._source(gen_id, source_version_id)
        version_id = new_id()
        tmp = self.blobs.new_tmp_path(".wav")
        try:
            duration = fx.apply_to_file(self.blobs.path(source_rel), tmp, checked)
            stored = self.blobs.write_file(version_path(gen_id, version_id), tmp, move=True)
        finally:
            tmp.unlink(missing_ok=True)

        def unit(session: Session) -> GenerationVersion | None:
            row = session.get(Generation, gen_id)
            if row is None:
                return None  # deleted meanwhile
            return add_version(
                session,
                row,
                stored,
                label=label or next_label(row, "version"),
                duration=duration,
                default=set_as_default,
                effects_chain=checked,
                source_version_id=source_id,
                version_id=version_id,
            )

        version = write_retrying(self.db, unit)
        if version is None:
            self.blobs.delete(stored.rel_path)
            raise NotFoundError(f"generation {gen_id!r} was deleted while its effects were applied")
        return version

    # ------------------------------------------------------------------ default / delete
    def set_default(self, gen_id: str, version_id: str) -> GenerationVersion:
        def unit(session: Session) -> GenerationVersion:
            row = self._generation(session, gen_id)
            version = self._of(row, version_id)
            make_default(row, version)
            return version

        return write_retrying(self.db, unit)

    def delete(self, gen_id: str, version_id: str) -> None:
        """Row first (one unit: a pin to it goes NULL, the default moves on), then the file."""

        def unit(session: Session) -> str:
            row = self._generation(session, gen_id)
            version = self._of(row, version_id)
            if len(row.versions) <= 1:
                raise ValidationError("Cannot delete the last remaining version")
            rel = version.audio_path
            row.versions.remove(version)
            session.delete(version)
            if version.is_default:
                make_default(row, row.versions[0])  # the oldest remaining one (upstream's rule)
            return rel

        rel = write_retrying(self.db, unit)
        with self.db.read() as session:  # another version may share the file (an adopted library)
            shared = session.scalar(
                select(GenerationVersion.id).where(GenerationVersion.audio_path == rel).limit(1)
            )
        if shared is None:
            self.blobs.delete(rel)

    @staticmethod
    def _of(row: Generation, version_id: str) -> GenerationVersion:
        for version in row.versions:
            if version.id == version_id:
                return version
        raise NotFoundError(f"version {version_id!r} is not a version of generation {row.id!r}")


def _as_list(chain: object) -> object:
    if isinstance(chain, str):
        try:
            return json.loads(chain)
        except ValueError:
            raise ValidationError("effects_chain is not valid JSON") from None
    return chain
