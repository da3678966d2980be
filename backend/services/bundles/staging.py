"""Staging: every file of a bundle is extracted to ``voicebox/.tmp`` and validated before any row is written.

``Staging`` remembers the staged temp files and the files already moved into place, so the write unit
(``commit``) can undo both: a failure removes what was moved, a lost write race puts the files back and runs
the unit again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from backend.db.interface import Database, run_retrying
from backend.services.audio_prep import prepare_reference, probe_audio
from backend.services.bundles.manifest import audio_ext
from backend.services.bundles.plans import GenerationPlan, ProfilePlan, SamplePlan
from backend.services.errors import ValidationError
from backend.services.profiles import MAX_AVATAR_BYTES, sniff_image
from backend.services.zipguard import SafeZip
from backend.storage.blobs import BlobStore, StoredBlob, sha256_file

log = logging.getLogger(__name__)


class Staging:
    """Staged temp files and the files already moved into place, so a failure can undo both."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.paths: list[Path] = []
        self.moved: list[str] = []
        self.sources: dict[str, Path] = {}

    def new(self, suffix: str = "") -> Path:
        path = self.blobs.new_tmp_path(suffix)
        self.paths.append(path)
        return path

    def adopt(self, path: Path) -> None:
        self.paths.append(path)

    def move(self, rel: str, path: Path) -> StoredBlob:
        self.moved.append(rel)
        self.sources[rel] = path
        return self.blobs.write_file(rel, path, move=True)

    def put_back(self) -> bool:
        """Undo the moves so the unit can run again (a write conflict): each file back to its staged path
        (or removed when it was copied: the source is still there). False if one could not be put back."""
        try:
            for rel in list(self.moved):
                source = self.sources.get(rel)
                if source is not None and not source.exists():
                    os.replace(self.blobs.path(rel), source)
                else:
                    self.blobs.delete(rel)
                self.moved.remove(rel)
        except OSError:
            log.warning("could not put staged files back for a retry", exc_info=True)
            return False
        return True

    def rollback(self) -> None:
        for rel in self.moved:
            try:
                self.blobs.delete(rel)
            except OSError:
                log.warning("could not remove %s after a failed import", rel, exc_info=True)
        self.moved.clear()

    def cleanup(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.paths.clear()


def stage_sample(zf: SafeZip, stage: Staging, plan: SamplePlan, max_bytes: int) -> None:
    """A sample extracted (at most ``max_bytes``), its sha256 checked, decoded and prepared like an upload."""
    raw = stage.new(".in")
    zf.extract(plan.entry, raw, max_bytes)
    if plan.sha256 and sha256_file(raw) != plan.sha256:
        raise ValidationError(
            f"{plan.entry}: sha256 does not match the manifest; the bundle is damaged"
        )
    prepared = prepare_reference(stage.blobs, raw, what=plan.entry)
    if prepared.path != raw:
        stage.adopt(prepared.path)
    plan.prepared = prepared


def stage_avatar(zf: SafeZip, stage: Staging, plan: ProfilePlan) -> None:
    """The avatar, if the plan has one: its sha256 checked and its image kind sniffed."""
    if not plan.avatar_entry:
        return
    raw = stage.new(".img")
    zf.extract(plan.avatar_entry, raw, MAX_AVATAR_BYTES)
    if plan.avatar_sha256 and sha256_file(raw) != plan.avatar_sha256:
        raise ValidationError(f"{plan.avatar_entry}: sha256 does not match the manifest")
    with open(raw, "rb") as handle:
        kind = sniff_image(handle.read(16))
    if kind is None:
        raise ValidationError(f"{plan.avatar_entry}: the avatar is not a PNG, JPEG or WEBP image")
    plan.avatar_kind, plan.avatar_staged = kind, raw


def stage_generation(zf: SafeZip, stage: Staging, plan: GenerationPlan, max_bytes: int) -> None:
    """A generation's audio and every version's (each at most ``max_bytes``): sha256 checked, decodable."""
    if plan.entry is None:
        return
    ext = audio_ext(plan.entry)
    raw = stage.new(f".{ext}")
    zf.extract(plan.entry, raw, max_bytes)
    if plan.sha256 and sha256_file(raw) != plan.sha256:
        raise ValidationError(f"{plan.entry}: sha256 does not match the manifest")
    plan.duration = probe_audio(raw, what=plan.entry)
    plan.staged = raw
    for version in plan.versions:
        if version.entry == plan.entry:
            version.staged, version.duration = raw, plan.duration
            continue
        staged = stage.new(f".{audio_ext(version.entry)}")
        zf.extract(version.entry, staged, max_bytes)
        if version.sha256 and sha256_file(staged) != version.sha256:
            raise ValidationError(f"{version.entry}: sha256 does not match the manifest")
        version.duration = probe_audio(staged, what=version.entry)
        version.staged = staged


def commit(db: Database, stage: Staging, unit: Callable[[Session], Any]) -> Any:
    """One write unit that moves staged files; on any failure the moved files are removed again.

    A unit that lost a race (``WriteConflictError``: a PostgreSQL serialization failure, or a fence failure
    on the volume) puts its files back where they were staged and runs again, like ``write_retrying``.
    """

    def attempt() -> Any:
        with db.write() as session:
            return unit(session)

    try:
        return run_retrying(attempt, db.conflict_retries, before_retry=stage.put_back)
    except BaseException:
        stage.rollback()
        raise
