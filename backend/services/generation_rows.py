"""A generation row's transitions, each a function over one write unit's session.

Why apart from ``GenerationService``: the service owns the queue and the synthesis thread; what a row says at
each step (the intent published, a retry or a new take claimed, the end recorded, failed rows cleared) is plain
database work that reads better, and is checked more easily, without the threads around it. Every claim sets
the owner worker and a lease, so a peer's ``fsck`` can tell a dead worker's job from a live one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.config import Settings
from backend.db.models import Generation, Profile, new_id
from backend.services.errors import ConflictError, NotFoundError, ValidationError
from backend.services.synthesis import GenerationInput, usable_profile
from backend.statuses import RETRYABLE, GenerationStatus


@dataclass(frozen=True)
class Claim:
    """Who runs a generation now, and until when its lease holds (renewed while it runs)."""

    worker_id: str
    lease_seconds: float
    now: datetime

    @classmethod
    def of(cls, settings: Settings, now: datetime) -> Claim:
        return cls(settings.worker_id, settings.job_lease_seconds, now)

    @property
    def expires(self) -> datetime:
        return self.now + timedelta(seconds=self.lease_seconds)

    def stamp(self, row: Generation) -> None:
        row.owner_worker_id = self.worker_id
        row.lease_expires_at = self.expires


def model_size(tts_model: str) -> str | None:
    """The Qwen3-TTS size a repo id names (``1.7B``, ``0.6B``), or None for another model."""
    for size in ("1.7B", "0.6B"):
        if size in tts_model:
            return size
    return None


def answered(
    session: Session, request: GenerationInput, gen_id: str, request_id: str | None
) -> Generation | None:
    """The row that already answers this request: the caller's chosen id delivered twice, or a retried
    RunPod job (the same request id); None for a new request."""
    if request.generation_id:
        chosen = session.get(Generation, gen_id)
        if chosen is not None:
            return chosen
    if request_id:
        return session.scalar(select(Generation).where(Generation.request_id == request_id))
    return None


def intent_row(
    session: Session,
    request: GenerationInput,
    gen_id: str,
    *,
    request_id: str | None,
    engine: str,
    claim: Claim,
    size: str | None,
) -> Generation:
    """The ``generating`` row published before any work (the profile must exist and have samples)."""
    profile = usable_profile(session, request.profile_id)
    row = Generation(
        id=gen_id,
        profile_id=profile.id,
        profile_name=profile.name,
        text=request.text,
        language=request.language,
        seed=request.seed,
        instruct=request.instruct,
        engine=engine,
        model_size=size,
        status=GenerationStatus.GENERATING,
        source=request.source,
        audio_path=f"generations/{claim.now:%Y-%m}/{gen_id}.wav",
        request_id=request_id,
        created_at=claim.now,
    )
    claim.stamp(row)
    session.add(row)
    return row


def claim_retry(
    session: Session, gen_id: str, *, claim: Claim, size: str | None
) -> tuple[Generation, GenerationInput]:
    """A failed row made ``generating`` again in place (same id, text, language, seed), with a new file."""
    row = session.get(Generation, gen_id)
    if row is None:
        raise NotFoundError(f"generation {gen_id} not found")
    if row.status not in RETRYABLE:
        raise ConflictError(
            f"generation {gen_id} is {row.status}; only failed generations can be retried"
        )
    if row.profile_id is None:
        raise ConflictError("the profile of this generation was deleted; it cannot be retried")
    profile = session.get(Profile, row.profile_id)
    if profile is None or not profile.samples:
        raise ValidationError(
            f"profile {row.profile_name!r} has no samples; add one before retrying"
        )
    row.status = GenerationStatus.GENERATING
    row.error = None
    row.duration = None
    row.sha256 = None
    row.size_bytes = None
    row.completed_at = None
    row.audio_path = f"generations/{claim.now:%Y-%m}/{gen_id}-{new_id()[:8]}.wav"
    claim.stamp(row)
    row.model_size = size
    request = GenerationInput(
        profile_id=row.profile_id or "",
        text=row.text,
        language=row.language,
        seed=row.seed,
        instruct=row.instruct,
        source=row.source,
    )
    return row, request


def claim_take(
    session: Session, gen_id: str, *, claim: Claim
) -> tuple[Generation, GenerationInput]:
    """A completed row made ``generating`` for a new take (fresh seed, no effects, its own file); it keeps
    its versions and audio until the take completes."""
    row = session.get(Generation, gen_id)
    if row is None:
        raise NotFoundError(f"generation {gen_id} not found")
    if row.status != GenerationStatus.COMPLETED or not row.versions:
        raise ValidationError(
            f"generation {gen_id} is {row.status}; only a completed generation can be "
            "regenerated (a failed one is retried: POST /generate/{id}/retry)"
        )
    if row.profile_id is None:
        raise ConflictError("the profile of this generation was deleted; it cannot be regenerated")
    row.status = GenerationStatus.GENERATING
    row.error = None
    claim.stamp(row)
    request = GenerationInput(
        profile_id=row.profile_id,
        text=row.text,
        language=row.language,
        seed=int.from_bytes(uuid.uuid4().bytes[:4], "big") % (2**31 - 1),
        instruct=row.instruct,
        source=row.source,
        effects_chain=[],
        take_path=f"generations/{claim.now:%Y-%m}/{gen_id}-take-{new_id()[:8]}.wav",
    )
    return row, request


def renew_lease(session: Session, gen_id: str, claim: Claim) -> None:
    """A running row's lease moved on (the job is alive); a row that ended meanwhile is left alone."""
    row = session.get(Generation, gen_id)
    if row is not None and row.status == GenerationStatus.GENERATING:
        row.lease_expires_at = claim.expires


def record_end(session: Session, gen_id: str, status: str, error: str) -> str | None:
    """A running row that did not complete: ``status`` with ``error``, or ``completed`` again when a new
    take failed (it keeps its versions). Returns the file to delete, if any."""
    row = session.get(Generation, gen_id)
    if row is None or row.status != GenerationStatus.GENERATING:
        return None
    row.lease_expires_at = None
    if row.versions:  # a failed new take: the generation keeps its versions and audio
        row.status = GenerationStatus.COMPLETED
        row.error = f"the new take failed: {error}"
        return None
    row.status = status
    row.error = error
    rel, row.audio_path = row.audio_path, None
    return rel


def delete_failed(session: Session) -> list[str | None]:
    """Every failed (and legacy cancelled) row deleted; returns their files."""
    rows = session.scalars(select(Generation).where(Generation.status.in_(sorted(RETRYABLE)))).all()
    paths = [row.audio_path for row in rows]
    for row in rows:
        session.delete(row)
    return paths
