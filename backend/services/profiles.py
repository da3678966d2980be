"""Voice profiles, their reference samples and avatars, on the volume.

Order of effects (`docs/reliability.md`): a new file is written atomically first, then its row in one write unit (a file
with no row is an orphan ``volume fsck`` can collect; a row with no file would be a broken profile). A delete
commits the row change first, then removes the files. Deleting a profile keeps its history: the generations'
``profile_id`` becomes NULL and ``profile_name`` keeps the name, so old takes stay listed and playable.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.db.models import Generation, Profile, ProfileSample, utcnow
from backend.services.audio_prep import prepare_reference
from backend.services.common import write_retrying
from backend.services.errors import ConflictError, NotFoundError, ValidationError
from backend.statuses import ACTIVE
from backend.storage.blobs import sha256_file

if TYPE_CHECKING:
    from backend.db.interface import Database
    from backend.engines.base import Engines
    from backend.storage.blobs import BlobStore

log = logging.getLogger(__name__)

MAX_AVATAR_BYTES = 5 * 1024 * 1024
AVATAR_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True)
class ProfileInfo:
    """A profile row (detached) with the counts Voicebox's answer carries."""

    profile: Profile
    sample_count: int = 0
    generation_count: int = 0


@dataclass(frozen=True)
class SampleRef:
    """What a prompt-cache hook needs to find a sample's cached prompts: its file, hash and text."""

    id: str
    audio_path: str
    sha256: str | None
    reference_text: str


@dataclass(frozen=True)
class DeleteResult:
    samples_deleted: int
    generations_kept: int


#: A hook told that prompts built from ``samples`` of ``profile_id`` are stale (profile or sample deleted).
PromptHook = Callable[[str, list[SampleRef]], None]


def sniff_image(head: bytes) -> str | None:
    """The avatar type from its first bytes (never from its name): png, jpg, webp, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


class ProfileService:
    def __init__(self, db: Database, blobs: BlobStore, engines: Engines | None) -> None:
        """``engines``: asked to forget the prompts of a deleted profile (None: they age out of the cache)."""
        self.db = db
        self.blobs = blobs
        self.engines = engines
        self.prompt_hooks: list[PromptHook] = [self._forget_prompts]

    # ------------------------------------------------------------------------------------------ helpers
    @staticmethod
    def _get(session: Session, profile_id: str) -> Profile:
        profile = session.get(Profile, profile_id)
        if profile is None:
            raise NotFoundError(f"profile {profile_id!r} not found")
        return profile

    @staticmethod
    def _counts(session: Session, profile_id: str) -> tuple[int, int]:
        samples = session.scalar(
            select(func.count())
            .select_from(ProfileSample)
            .where(ProfileSample.profile_id == profile_id)
        )
        gens = session.scalar(
            select(func.count()).select_from(Generation).where(Generation.profile_id == profile_id)
        )
        return int(samples or 0), int(gens or 0)

    @staticmethod
    def _name_taken(session: Session, name: str, *, except_id: str | None = None) -> bool:
        query = select(Profile.id).where(Profile.name == name)
        if except_id is not None:
            query = query.where(Profile.id != except_id)
        return session.scalar(query) is not None

    def _info(self, session: Session, profile: Profile) -> ProfileInfo:
        samples, gens = self._counts(session, profile.id)
        return ProfileInfo(profile, samples, gens)

    def require_profile(self, profile_id: str) -> Profile:
        with self.db.read() as session:
            return self._get(session, profile_id)

    # ------------------------------------------------------------------------------------------ profiles
    def list_profiles(self) -> list[ProfileInfo]:
        with self.db.read() as session:
            samples = dict(
                session.execute(
                    select(ProfileSample.profile_id, func.count()).group_by(
                        ProfileSample.profile_id
                    )
                ).all()
            )
            gens = dict(
                session.execute(
                    select(Generation.profile_id, func.count())
                    .where(Generation.profile_id.is_not(None))
                    .group_by(Generation.profile_id)
                ).all()
            )
            rows = session.scalars(
                select(Profile).order_by(Profile.created_at.desc(), Profile.id)
            ).all()
            return [ProfileInfo(p, samples.get(p.id, 0), gens.get(p.id, 0)) for p in rows]

    def get_profile(self, profile_id: str) -> ProfileInfo:
        with self.db.read() as session:
            return self._info(session, self._get(session, profile_id))

    def create_profile(
        self, name: str, description: str | None = None, language: str = "en"
    ) -> ProfileInfo:
        def unit(session: Session) -> ProfileInfo:
            if self._name_taken(session, name):
                raise ConflictError(f"a profile named {name!r} already exists; choose another name")
            profile = Profile(id=str(uuid.uuid4()), name=name, description=description)
            profile.language = language
            now = utcnow()
            profile.created_at = now
            profile.updated_at = now
            session.add(profile)
            self._flush(session, name)
            return ProfileInfo(profile, 0, 0)

        return write_retrying(self.db, unit)

    @staticmethod
    def _flush(session: Session, name: str) -> None:
        try:
            session.flush()
        except IntegrityError:
            raise ConflictError(
                f"a profile named {name!r} already exists; choose another name"
            ) from None

    def update_profile(
        self, profile_id: str, name: str, description: str | None, language: str
    ) -> ProfileInfo:
        """Replace every editable field (Voicebox's PUT); applied to the latest copy under the lease."""

        def unit(session: Session) -> ProfileInfo:
            profile = self._get(session, profile_id)
            if self._name_taken(session, name, except_id=profile_id):
                raise ConflictError(
                    f"another profile is already named {name!r}; choose another name"
                )
            profile.name = name
            profile.description = description
            profile.language = language
            profile.updated_at = utcnow()
            self._flush(session, name)
            return self._info(session, profile)

        return write_retrying(self.db, unit)

    def delete_profile(self, profile_id: str) -> DeleteResult:
        """Delete the profile, its samples, avatar, files and cached prompts; keep its history rows."""

        def unit(session: Session) -> tuple[DeleteResult, list[SampleRef], str | None]:
            profile = self._get(session, profile_id)
            busy = session.scalar(
                select(func.count())
                .select_from(Generation)
                .where(
                    Generation.profile_id == profile_id,
                    Generation.status.in_(sorted(ACTIVE)),
                    (Generation.lease_expires_at.is_(None))
                    | (Generation.lease_expires_at > utcnow()),
                )
            )
            if busy:
                raise ConflictError(
                    f"profile {profile.name!r} has a generation in progress; retry once it has finished"
                )
            refs = [
                SampleRef(s.id, s.audio_path, s.sha256, s.reference_text) for s in profile.samples
            ]
            avatar = profile.avatar_path
            updated = session.execute(
                update(Generation)
                .where(Generation.profile_id == profile_id)
                .values(
                    profile_id=None,
                    profile_name=func.coalesce(Generation.profile_name, profile.name),
                )
                .execution_options(synchronize_session=False)
            )
            kept = cast("CursorResult[Any]", updated).rowcount  # an UPDATE's result is a cursor's
            session.delete(profile)
            return DeleteResult(len(refs), int(kept or 0)), refs, avatar

        result, refs, avatar = write_retrying(self.db, unit)
        self._run_prompt_hooks(profile_id, refs)
        for ref in refs:
            self.blobs.delete(ref.audio_path)
        self.blobs.delete(avatar)
        self.blobs.delete_tree(f"profiles/{profile_id}")
        return result

    # ------------------------------------------------------------------------------------------ prompts
    def _run_prompt_hooks(self, profile_id: str, refs: list[SampleRef]) -> None:
        for hook in self.prompt_hooks:
            try:
                hook(profile_id, refs)
            except Exception:  # noqa: BLE001 - a stale cache entry must not fail the delete
                log.warning("prompt-cache hook failed for profile %s", profile_id, exc_info=True)

    def _forget_prompts(self, profile_id: str, refs: list[SampleRef]) -> None:
        """Default hook: drop every cached voice prompt built from the deleted profile's samples.

        The prompt cache is keyed by a one-way hash of content (engine, model, samples), so it is asked by
        the samples' audio sha256 (each entry records the samples it was built from). A worker without
        engines leaves the entries to age out of the bounded LRU cache.
        """
        if self.engines is None:
            return
        digests = [ref.sha256 or self._sample_sha256(ref.audio_path) for ref in refs]
        self.engines.forget_prompts([d for d in digests if d])

    def _sample_sha256(self, rel: str) -> str | None:
        """A sample's audio hash when its row lacks one (adopted libraries); None if the file is gone."""
        try:
            return sha256_file(self.blobs.path(rel))
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------------------------------ samples
    def list_samples(self, profile_id: str) -> list[ProfileSample]:
        with self.db.read() as session:
            self._get(session, profile_id)
            return list(
                session.scalars(
                    select(ProfileSample)
                    .where(ProfileSample.profile_id == profile_id)
                    .order_by(ProfileSample.created_at, ProfileSample.id)
                )
            )

    def add_sample(self, profile_id: str, staged: Path, reference_text: str) -> ProfileSample:
        """Validate ``staged`` (an upload in ``voicebox/.tmp``), store it, then add its row."""
        text = self._check_text(reference_text)
        self.require_profile(profile_id)
        prepared = prepare_reference(self.blobs, staged, what="reference audio")
        sample_id = str(uuid.uuid4())
        rel = f"profiles/{profile_id}/{sample_id}.wav"
        try:
            stored = self.blobs.write_file(rel, prepared.path, move=True)

            def unit(session: Session) -> ProfileSample:
                self._get(session, profile_id)
                sample = ProfileSample(
                    id=sample_id,
                    profile_id=profile_id,
                    audio_path=rel,
                    reference_text=text,
                    sha256=stored.sha256,
                    duration=prepared.duration,
                    size_bytes=stored.size,
                    created_at=utcnow(),
                )
                session.add(sample)
                profile = session.get(Profile, profile_id)
                if profile is not None:
                    profile.updated_at = utcnow()
                return sample

            return write_retrying(self.db, unit)
        except BaseException:
            self.blobs.delete(rel)
            raise
        finally:
            if prepared.path != staged:
                prepared.path.unlink(missing_ok=True)

    @staticmethod
    def _check_text(reference_text: str) -> str:
        if not isinstance(reference_text, str) or not reference_text.strip():
            raise ValidationError(
                "reference_text must not be empty: give the words spoken in the clip"
            )
        if len(reference_text) > 1000:
            raise ValidationError(
                f"reference_text is {len(reference_text)} characters; at most 1000 are accepted"
            )
        return reference_text

    def get_sample(self, sample_id: str) -> ProfileSample:
        with self.db.read() as session:
            sample = session.get(ProfileSample, sample_id)
            if sample is None:
                raise NotFoundError(f"sample {sample_id!r} not found")
            return sample

    def sample_file(self, sample_id: str) -> Path:
        sample = self.get_sample(sample_id)
        if not self.blobs.exists(sample.audio_path):
            raise NotFoundError(
                f"the audio file of sample {sample_id!r} is missing on the volume; run `voicebox-worker "
                "volume fsck` and re-upload the sample"
            )
        return self.blobs.path(sample.audio_path)

    def update_sample(self, sample_id: str, reference_text: str) -> ProfileSample:
        text = self._check_text(reference_text)
        old: dict[str, SampleRef] = {}

        def unit(session: Session) -> ProfileSample:
            sample = session.get(ProfileSample, sample_id)
            if sample is None:
                raise NotFoundError(f"sample {sample_id!r} not found")
            old["ref"] = SampleRef(
                sample.id, sample.audio_path, sample.sha256, sample.reference_text
            )
            sample.reference_text = text
            return sample

        sample = write_retrying(self.db, unit)
        self._run_prompt_hooks(sample.profile_id, [old["ref"]])
        return sample

    def delete_sample(self, sample_id: str) -> None:
        def unit(session: Session) -> tuple[SampleRef, str]:
            sample = session.get(ProfileSample, sample_id)
            if sample is None:
                raise NotFoundError(f"sample {sample_id!r} not found")
            ref = SampleRef(sample.id, sample.audio_path, sample.sha256, sample.reference_text)
            profile_id = sample.profile_id
            session.delete(sample)
            return ref, profile_id

        ref, profile_id = write_retrying(self.db, unit)
        self._run_prompt_hooks(profile_id, [ref])
        self.blobs.delete(ref.audio_path)

    # ------------------------------------------------------------------------------------------ avatar
    def set_avatar(self, profile_id: str, staged: Path) -> ProfileInfo:
        """Store a PNG/JPEG/WEBP avatar (type from its bytes, ≤ 5 MB) and point the profile at it."""
        self.require_profile(profile_id)
        size = staged.stat().st_size
        if size > MAX_AVATAR_BYTES:
            from backend.services.errors import PayloadTooLargeError

            raise PayloadTooLargeError("the avatar is over 5 MB; upload a smaller image")
        with open(staged, "rb") as handle:
            kind = sniff_image(handle.read(16))
        if kind is None:
            raise ValidationError(
                "the avatar must be a PNG, JPEG or WEBP image (checked by content)"
            )
        rel = f"profiles/{profile_id}/avatar-{uuid.uuid4().hex[:12]}.{kind}"
        old: dict[str, str | None] = {}
        try:
            self.blobs.write_file(rel, staged, move=True)

            def unit(session: Session) -> ProfileInfo:
                profile = self._get(session, profile_id)
                old["path"] = profile.avatar_path
                profile.avatar_path = rel
                profile.updated_at = utcnow()
                return self._info(session, profile)

            info = write_retrying(self.db, unit)
        except BaseException:
            self.blobs.delete(rel)
            raise
        if old.get("path") and old["path"] != rel:
            self.blobs.delete(old["path"])
        return info

    def avatar_file(self, profile_id: str) -> tuple[Path, str]:
        profile = self.require_profile(profile_id)
        if not profile.avatar_path:
            raise NotFoundError(f"profile {profile_id!r} has no avatar")
        if not self.blobs.exists(profile.avatar_path):
            raise NotFoundError(
                f"the avatar file of profile {profile_id!r} is missing on the volume"
            )
        ext = profile.avatar_path.rsplit(".", 1)[-1].lower()
        media = AVATAR_TYPES.get("jpg" if ext == "jpeg" else ext, "application/octet-stream")
        return self.blobs.path(profile.avatar_path), media

    def delete_avatar(self, profile_id: str) -> ProfileInfo:
        old: dict[str, str | None] = {}

        def unit(session: Session) -> ProfileInfo:
            profile = self._get(session, profile_id)
            if not profile.avatar_path:
                raise NotFoundError(f"profile {profile_id!r} has no avatar to delete")
            old["path"] = profile.avatar_path
            profile.avatar_path = None
            profile.updated_at = utcnow()
            return self._info(session, profile)

        info = write_retrying(self.db, unit)
        self.blobs.delete(old.get("path"))
        return info
