"""Small helpers the services share: write retries, the engines or a 409, names on the volume, ids, times,
download names."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.interface import write_retrying as write_retrying  # services import it from here
from backend.db.models import Profile
from backend.services.errors import ConflictError, ValidationError
from backend.storage.blobs import no_links_below

if TYPE_CHECKING:
    from backend.engines.base import Engines

#: Voicebox upstream's TTS languages (its ``TTS_LANGUAGE_PATTERN``): the fork's 10 plus 14 more.
LANGUAGES: tuple[str, ...] = (
    "zh", "en", "ja", "ko", "de", "fr", "ru", "pt", "es", "it",
    "he", "ar", "da", "el", "fi", "hi", "ms", "nl", "no", "pl", "sv", "sw", "tr", "ro",
)  # fmt: skip

#: A file name on the volume a user may give (exports, imports): letters, digits, ``.``, ``_``, ``-``; starts
#: with a letter or digit; never ``..``; at most ``VOLUME_NAME_MAX`` characters. The same pattern is in the
#: OpenAPI document, so what the spec allows is what the server takes.
VOLUME_NAME_PATTERN = r"^[A-Za-z0-9](\.?[A-Za-z0-9_-])*\.?$"
VOLUME_NAME_MAX = 128
VOLUME_NAME_RE = re.compile(VOLUME_NAME_PATTERN)


def require_engines(engines: Engines | None, what: str = "TTS engine") -> Engines:
    """The engines, or a 409 saying this worker has none (an API-only or maintenance process)."""
    if engines is None:
        raise ConflictError(f"no {what} is configured on this worker")
    return engines


def volume_file(folder: Path, name: str, *, what: str) -> Path:
    """``folder/name`` for a bare file name a user gave; refuses anything path-like, and a name that is a
    symbolic link on the volume (``UnsafePathError``, 400): a planted link must not be followed out of it."""
    if (
        not isinstance(name, str)
        or len(name) > VOLUME_NAME_MAX
        or not VOLUME_NAME_RE.fullmatch(name)
    ):
        raise ValidationError(
            f"{what} {name!r} is not a plain file name: use letters, digits, '.', '_' and '-' "
            "(at most 128 characters, no folders)"
        )
    return no_links_below(folder.parent, [folder.name, name])


def is_uuid(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def unique_profile_name(session: Session, name: str) -> str:
    """``name``, or ``name (n)`` with the first free n, as Voicebox names imported duplicates."""

    def taken(candidate: str) -> bool:
        return session.scalar(select(Profile.id).where(Profile.name == candidate)) is not None

    if not taken(name):
        return name
    n = 1
    while True:
        suffix = f" ({n})"
        candidate = name[: 100 - len(suffix)] + suffix
        if not taken(candidate):
            return candidate
        n += 1


def parse_time(value: object) -> datetime | None:
    """An ISO time from a manifest as naive UTC, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        from datetime import UTC

        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def download_name(text: str, fallback: str, suffix: str) -> str:
    """A safe file name for Content-Disposition, built as Voicebox builds it (alnum, space, - and _)."""
    safe = "".join(c for c in (text or "")[:30] if c.isalnum() or c in (" ", "-", "_")).strip()
    return f"{safe or fallback}{suffix}"
