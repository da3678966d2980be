"""What a finished synthesis leaves on the volume: its audio (and, with effects, the clean original), its
versions, and the row completed.

Why this order: the audio is written atomically before the row says ``completed``, so a completed row always
has its file; the completion is retried on a lost fence, because the audio is already durable and must not be
orphaned by one failed publish. A row deleted or cancelled meanwhile is left alone and the new files removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session

from backend.db.models import Generation, Profile, utcnow
from backend.services.common import write_retrying
from backend.services.synthesis import GenerationInput
from backend.services.versions import add_version, next_label
from backend.statuses import GenerationStatus
from backend.storage import effects as fx
from backend.storage.audio import encode_audio

if TYPE_CHECKING:
    from backend.db.interface import Database
    from backend.engines.base import SynthesisResult
    from backend.storage.blobs import BlobStore, StoredBlob

#: how a generation ended: its status and, unless it completed, why
Outcome = tuple[str, str | None]


@dataclass(frozen=True)
class _Written:
    """The files of one finished synthesis: the stored (default) version and the clean original."""

    stored: StoredBlob
    clean: StoredBlob | None
    chain: list[dict[str, Any]] | None


def store_result(
    db: Database,
    blobs: BlobStore,
    gen_id: str,
    request: GenerationInput,
    audio: np.ndarray,
    result: SynthesisResult,
    *,
    queue_wait: float,
) -> Outcome:
    """Write the audio, then complete the row (``queue_wait``: seconds it waited for the synthesis thread)."""
    target = _target(db, gen_id, request)
    if target is None:
        return (GenerationStatus.CANCELLED, "deleted while generating")
    written = _write(blobs, target, request, audio, result.sample_rate)

    def complete(session: Session) -> bool:
        return _complete(session, gen_id, request, written, result, queue_wait)

    # the audio is durable now: a lost fence must not lose the row's completion
    if not write_retrying(db, complete):
        for blob in (written.clean, written.stored):
            if blob is not None:
                blobs.delete(blob.rel_path)
        return (GenerationStatus.CANCELLED, "deleted or cancelled while generating")
    return (GenerationStatus.COMPLETED, None)


def _target(
    db: Database, gen_id: str, request: GenerationInput
) -> tuple[str, list[dict[str, Any]] | None] | None:
    """Where the audio goes and the effects chain it gets (the request's, else the profile's, never on a
    new take); None when the row was deleted while generating."""
    with db.read() as session:
        row = session.get(Generation, gen_id)
        if row is None or row.audio_path is None:
            return None
        chain = request.effects_chain
        if chain is None and row.profile_id and not request.take_path:
            profile = session.get(Profile, row.profile_id)
            chain = fx.parse_stored(profile.effects_chain) if profile else None
        return request.take_path or row.audio_path, chain


def _write(
    blobs: BlobStore,
    target: tuple[str, list[dict[str, Any]] | None],
    request: GenerationInput,
    audio: np.ndarray,
    sample_rate: int,
) -> _Written:
    """The audio written atomically; with effects, the clean original is kept as its own version (upstream
    does the same)."""
    rel, chain = target
    chain = fx.validate_chain(chain) if fx.is_active(chain) else None
    clean = None
    if chain:
        clean = blobs.write_bytes(
            rel.removesuffix(".wav") + "-clean.wav", encode_audio(audio, sample_rate, "wav")
        )
        audio = fx.apply_to_array(audio, sample_rate, chain)
    stored = blobs.write_bytes(rel, encode_audio(audio, sample_rate, "wav"))
    return _Written(stored=stored, clean=clean, chain=chain)


def _complete(
    session: Session,
    gen_id: str,
    request: GenerationInput,
    written: _Written,
    result: SynthesisResult,
    queue_wait: float,
) -> bool:
    """The row's versions added and the row ``completed``; False when it was deleted or cancelled meanwhile."""
    row = session.get(Generation, gen_id)
    if row is None or row.status != GenerationStatus.GENERATING:
        return False
    label = next_label(row, "take") if request.take_path else "original"
    source = None
    if written.clean is not None:
        source = add_version(
            session, row, written.clean, label=label, duration=result.duration, default=False
        ).id
        label = next_label(row, "take") if request.take_path else "effects"
    add_version(
        session,
        row,
        written.stored,
        label=label,
        duration=result.duration,
        default=True,
        effects_chain=written.chain,
        source_version_id=source,
        seed=request.seed if request.take_path else None,
    )
    row.status = GenerationStatus.COMPLETED
    row.error = None
    row.duration = result.duration
    row.sha256 = written.stored.sha256
    row.size_bytes = written.stored.size
    row.queue_wait_seconds = queue_wait
    row.model_load_seconds = result.load_seconds
    row.synthesis_seconds = result.synthesis_seconds
    row.rtf = result.rtf
    row.completed_at = utcnow()
    row.lease_expires_at = None
    return True
