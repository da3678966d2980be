"""Server-side generation defaults (Voicebox's ``/settings/generation``), one row in the database.

Why in the database: every window of the desktop app, every script and every worker on the volume must see the
same defaults, and ``POST /generate`` fills the fields a request leaves out from them. Reading never writes: with
no row yet the defaults below are answered, and the first update creates the row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from backend.db.models import GenerationSettingsRow, utcnow
from backend.services.common import write_retrying
from backend.services.errors import ValidationError

if TYPE_CHECKING:
    from backend.db.interface import Database

#: (min, max) of the integer fields, the same bounds as ``GenerationRequest``
BOUNDS = {"max_chunk_chars": (100, 5000), "crossfade_ms": (0, 500)}


@dataclass(frozen=True)
class GenerationDefaults:
    max_chunk_chars: int = 800
    crossfade_ms: int = 50
    normalize_audio: bool = True
    autoplay_on_generate: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _from_row(row: GenerationSettingsRow | None) -> GenerationDefaults:
    if row is None:
        return GenerationDefaults()
    return GenerationDefaults(
        max_chunk_chars=row.max_chunk_chars,
        crossfade_ms=row.crossfade_ms,
        normalize_audio=bool(row.normalize_audio),
        autoplay_on_generate=bool(row.autoplay_on_generate),
    )


class AppSettingsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def generation(self) -> GenerationDefaults:
        with self.db.read() as session:
            return _from_row(session.get(GenerationSettingsRow, 1))

    def update_generation(self, patch: dict[str, Any]) -> GenerationDefaults:
        """Apply the fields given (``None`` means "leave it"); unknown or out-of-range fields are a 400."""
        names = {f.name for f in fields(GenerationDefaults)}
        unknown = sorted(set(patch) - names)
        if unknown:
            raise ValidationError(f"unknown generation setting(s): {', '.join(unknown)}")
        given = {k: v for k, v in patch.items() if v is not None}
        for name, (low, high) in BOUNDS.items():
            value = given.get(name)
            if value is not None and not low <= value <= high:
                raise ValidationError(f"{name} must be between {low} and {high}, not {value}")

        def unit(session: Any) -> GenerationDefaults:
            row = session.get(GenerationSettingsRow, 1)
            merged = replace(_from_row(row), **given)
            if row is None:
                row = GenerationSettingsRow(id=1)
                session.add(row)
            for key, value in merged.as_dict().items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            return merged

        return write_retrying(self.db, unit)
