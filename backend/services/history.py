"""Generation history: list, search, stats, favourites, delete, and the audio in several formats.

Rows outlive their profile (``profile_id`` NULL, ``profile_name`` kept), so every answer reads the name from the
row itself rather than joining profiles — the join is what made Voicebox drop such rows from its history.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from backend.db.models import Generation, utcnow
from backend.db.search import contains
from backend.services.common import download_name, write_retrying
from backend.services.errors import ConflictError, NotFoundError, ValidationError
from backend.statuses import ACTIVE
from backend.storage import audio as audio_mod

if TYPE_CHECKING:
    from backend.db.interface import Database
    from backend.storage.blobs import BlobStore

OUTPUT_FORMATS = ("wav", "flac", "mp3", "opus")
MAX_LIMIT = 100
#: SQLite binds 64-bit integers only; a larger offset was a 500 (OverflowError) instead of a 422.
MAX_OFFSET = 2**31 - 1


@dataclass(frozen=True)
class AudioAnswer:
    """Either a file to send as is (``path``) or encoded bytes (``data``), with its type and a name."""

    media_type: str
    filename: str
    path: Path | None = None
    data: bytes | None = None


@dataclass(frozen=True)
class HistoryStats:
    total_generations: int
    total_duration_seconds: float
    generations_by_profile: dict[str, int]
    favorites: int
    by_status: dict[str, int]


def cursor_of(row: Generation) -> str:
    """The keyset cursor of a row: its id (the server looks up its place in the order)."""
    return row.id


class HistoryService:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    @staticmethod
    def _get(session: Session, generation_id: str) -> Generation:
        row = session.get(Generation, generation_id)
        if row is None:
            raise NotFoundError(f"generation {generation_id!r} not found")
        return row

    def list(
        self,
        *,
        profile_id: str | None = None,
        search: str | None = None,
        limit: int = 50,
        offset: int = 0,
        after: str | None = None,
    ) -> tuple[list[Generation], int]:
        """Newest first; ``search`` matches the text or the profile name, case-insensitively.

        ``after`` (the id of the last row of the previous page) pages by key instead of by offset: the index
        seeks straight to the rows older than that one, where an offset walks past every row before it;
        ``offset`` then skips rows after it. ``total`` counts every match. A cursor row that is gone is a 404
        (start again from the first page).
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}")
        if not 0 <= offset <= MAX_OFFSET:
            raise ValidationError(f"offset must be between 0 and {MAX_OFFSET}")
        query = select(Generation)
        if profile_id:
            query = query.where(Generation.profile_id == profile_id)
        with self.db.read() as session:
            key = None
            if after:
                anchor = session.get(Generation, after)
                if anchor is None:
                    raise NotFoundError(
                        f"history cursor {after!r} is not a generation (deleted?); start from the first page"
                    )
                key = (anchor.created_at, anchor.id)
            if search:
                query = query.where(contains(session, search))
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            if key is not None:
                query = query.where(
                    or_(
                        Generation.created_at < key[0],
                        and_(Generation.created_at == key[0], Generation.id < key[1]),
                    )
                )
            rows = session.scalars(
                query.order_by(Generation.created_at.desc(), Generation.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return list(rows), int(total)

    def stats(self) -> HistoryStats:
        with self.db.read() as session:
            total = session.scalar(select(func.count()).select_from(Generation)) or 0
            duration = session.scalar(select(func.sum(Generation.duration))) or 0.0
            by_profile = {
                (pid or "deleted"): int(n)
                for pid, n in session.execute(
                    select(Generation.profile_id, func.count()).group_by(Generation.profile_id)
                ).all()
            }
            favorites = session.scalar(
                select(func.count())
                .select_from(Generation)
                .where(Generation.is_favorited.is_(True))
            )
            by_status = {
                status: int(n)
                for status, n in session.execute(
                    select(Generation.status, func.count()).group_by(Generation.status)
                ).all()
            }
        return HistoryStats(int(total), float(duration), by_profile, int(favorites or 0), by_status)

    def get(self, generation_id: str) -> Generation:
        with self.db.read() as session:
            return self._get(session, generation_id)

    def delete(self, generation_id: str) -> None:
        """Row first (one write unit, its versions and story clips with it), then the files: a crash in
        between leaves orphans (fsck moves them to trash), never a row without its file."""
        captured: dict[str, list[str | None]] = {}

        def unit(session: Session) -> None:
            row = self._get(session, generation_id)
            live = row.lease_expires_at is None or row.lease_expires_at > utcnow()
            if row.status in ACTIVE and live:
                raise ConflictError(
                    f"generation {generation_id!r} is still generating; wait for it to finish"
                )
            captured["paths"] = [row.audio_path, *(v.audio_path for v in row.versions)]
            session.delete(row)

        write_retrying(self.db, unit)
        for rel in dict.fromkeys(captured.get("paths", [])):
            self.blobs.delete(rel)

    def toggle_favorite(self, generation_id: str) -> bool:
        def unit(session: Session) -> bool:
            row = self._get(session, generation_id)
            row.is_favorited = not bool(row.is_favorited)
            return bool(row.is_favorited)

        return write_retrying(self.db, unit)

    # ------------------------------------------------------------------------------------------ audio
    def audio_path(self, generation_id: str) -> tuple[Generation, Path]:
        row = self.get(generation_id)
        if not row.audio_path:
            raise NotFoundError(
                f"generation {generation_id!r} has no audio (status: {row.status})"
                + (f": {row.error}" if row.error else "")
            )
        if not self.blobs.exists(row.audio_path):
            raise NotFoundError(
                f"the audio file of generation {generation_id!r} is missing on the volume"
            )
        return row, self.blobs.path(row.audio_path)

    def audio(self, generation_id: str, fmt: str = "wav") -> AudioAnswer:
        """The audio as stored when it already is ``fmt``, else decoded and re-encoded (in memory)."""
        fmt = (fmt or "wav").lower()
        if fmt not in OUTPUT_FORMATS:
            raise ValidationError(
                f"format {fmt!r} is not supported; use one of {', '.join(OUTPUT_FORMATS)}"
            )
        row, path = self.audio_path(generation_id)
        stored_ext = path.suffix.lower().lstrip(".")
        name = f"{generation_id}.{fmt}"
        if stored_ext == fmt:
            return AudioAnswer(audio_mod.content_type(fmt), name, path=path)
        try:
            pcm, sr = audio_mod.decode_audio(path.read_bytes())
            data = audio_mod.encode_audio(pcm, sr, fmt)
        except audio_mod.AudioValidationError as exc:
            raise ValidationError(
                f"cannot convert generation {generation_id!r} to {fmt}: {exc}"
            ) from None
        return AudioAnswer(audio_mod.content_type(fmt), name, data=data)

    def export_audio(self, generation_id: str) -> AudioAnswer:
        row, path = self.audio_path(generation_id)
        ext = path.suffix.lower().lstrip(".") or "wav"
        media = (
            audio_mod.FORMATS[ext][2] if ext in audio_mod.FORMATS else "application/octet-stream"
        )
        return AudioAnswer(media, download_name(row.text, "generation", f".{ext}"), path=path)
