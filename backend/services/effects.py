"""Effect presets (built-ins seeded by migration ``0004``, user presets stored) and profile effects chains."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import EffectPreset, Profile, new_id, utcnow
from backend.services.common import write_retrying
from backend.services.errors import ConflictError, NotFoundError, ValidationError
from backend.storage import effects as fx

if TYPE_CHECKING:
    from backend.db.interface import Database


class EffectsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def presets(self) -> list[EffectPreset]:
        with self.db.read() as session:
            return list(
                session.scalars(
                    select(EffectPreset).order_by(EffectPreset.sort_order, EffectPreset.name)
                )
            )

    def preset(self, preset_id: str) -> EffectPreset:
        with self.db.read() as session:
            return _get(session, preset_id)

    def create_preset(self, name: str, description: str | None, chain: object) -> EffectPreset:
        checked = fx.validate_chain(chain)
        name = _name(name)

        def unit(session: Session) -> EffectPreset:
            _free(session, name, None)
            preset = EffectPreset(
                id=new_id(),
                name=name,
                description=description,
                effects_chain=fx.dump(checked) or "[]",
                is_builtin=False,
                sort_order=100,
                created_at=utcnow(),
            )
            session.add(preset)
            return preset

        return write_retrying(self.db, unit)

    def update_preset(
        self, preset_id: str, name: str | None, description: str | None, chain: object | None
    ) -> EffectPreset:
        checked = None if chain is None else fx.validate_chain(chain)
        new_name = None if name is None else _name(name)

        def unit(session: Session) -> EffectPreset:
            preset = _get(session, preset_id)
            if preset.is_builtin:
                raise ValidationError("built-in presets cannot be changed; save a copy instead")
            if new_name is not None:
                _free(session, new_name, preset.id)
                preset.name = new_name
            if description is not None:
                preset.description = description
            if checked is not None:
                preset.effects_chain = fx.dump(checked) or "[]"
            return preset

        return write_retrying(self.db, unit)

    def delete_preset(self, preset_id: str) -> None:
        def unit(session: Session) -> None:
            preset = _get(session, preset_id)
            if preset.is_builtin:
                raise ValidationError("built-in presets cannot be deleted")
            session.delete(preset)

        write_retrying(self.db, unit)

    # ------------------------------------------------------------------ profile chains
    def profile_chain(self, profile_id: str) -> list[dict[str, Any]] | None:
        with self.db.read() as session:
            profile = session.get(Profile, profile_id)
            if profile is None:
                raise NotFoundError(f"profile {profile_id!r} not found")
            return fx.parse_stored(profile.effects_chain)

    def set_profile_chain(
        self, profile_id: str, chain: object | None
    ) -> list[dict[str, Any]] | None:
        checked = None if chain is None else fx.validate_chain(chain)

        def unit(session: Session) -> None:
            profile = session.get(Profile, profile_id)
            if profile is None:
                raise NotFoundError(f"profile {profile_id!r} not found")
            profile.effects_chain = fx.dump(checked)

        write_retrying(self.db, unit)
        return checked or None


def _get(session: Session, preset_id: str) -> EffectPreset:
    preset = session.get(EffectPreset, preset_id)
    if preset is None:
        raise NotFoundError(f"preset {preset_id!r} not found")
    return preset


def _name(name: str) -> str:
    name = (name or "").strip()
    if not 1 <= len(name) <= 100:
        raise ValidationError("name must be 1 to 100 characters")
    return name


def _free(session: Session, name: str, own_id: str | None) -> None:
    taken = session.scalar(select(EffectPreset.id).where(EffectPreset.name == name))
    if taken is not None and taken != own_id:
        raise ConflictError(f"a preset named {name!r} already exists")
