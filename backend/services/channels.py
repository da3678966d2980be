"""Audio channels of the desktop app (Voicebox's ``/channels`` and ``/profiles/{id}/channels``).

The server only keeps them (the app routes playback to OS devices); they live in the database so every client of
the volume sees the same assignment. Rules as in Voicebox: names are unique, the seeded default channel cannot be
renamed or deleted, and every id in an assignment must exist — checked before anything is written.
"""

from __future__ import annotations

import builtins  # the class's own ``list`` method shadows the builtin in its annotations
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from backend.db.models import AudioChannel, ChannelDevice, Profile, ProfileChannel, new_id, utcnow
from backend.services.common import write_retrying
from backend.services.errors import ConflictError, NotFoundError, ValidationError

if TYPE_CHECKING:
    from backend.db.interface import Database

MAX_IDS = 1000


@dataclass(frozen=True)
class ChannelInfo:
    id: str
    name: str
    is_default: bool
    device_ids: list[str]
    created_at: datetime


def _info(channel: AudioChannel) -> ChannelInfo:
    return ChannelInfo(
        id=channel.id,
        name=channel.name,
        is_default=bool(channel.is_default),
        device_ids=[d.device_id for d in channel.devices],
        created_at=channel.created_at,
    )


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationError("channel name must not be blank")
    return name


def _unique_ids(ids: list[str], what: str) -> list[str]:
    if len(ids) > MAX_IDS:
        raise ValidationError(f"at most {MAX_IDS} {what}s")
    return list(dict.fromkeys(ids))


class ChannelService:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _get(session: Session, channel_id: str) -> AudioChannel:
        channel = session.get(AudioChannel, channel_id)
        if channel is None:
            raise NotFoundError(f"channel {channel_id} not found")
        return channel

    @staticmethod
    def _name_free(session: Session, name: str, except_id: str | None = None) -> None:
        query = select(AudioChannel.id).where(func.lower(AudioChannel.name) == name.lower())
        if except_id is not None:
            query = query.where(AudioChannel.id != except_id)
        if session.scalar(query) is not None:
            raise ConflictError(f"a channel named {name!r} already exists")

    @staticmethod
    def _set_devices(channel: AudioChannel, device_ids: list[str]) -> None:
        channel.devices.clear()
        for position, device_id in enumerate(_unique_ids(device_ids, "device id")):
            channel.devices.append(
                ChannelDevice(id=new_id(), device_id=device_id, position=position)
            )

    def list(self) -> list[ChannelInfo]:
        with self.db.read() as session:
            rows = session.scalars(
                select(AudioChannel).order_by(
                    AudioChannel.is_default.desc(), AudioChannel.created_at, AudioChannel.id
                )
            ).all()
            return [_info(c) for c in rows]

    def get(self, channel_id: str) -> ChannelInfo:
        with self.db.read() as session:
            return _info(self._get(session, channel_id))

    def create(self, name: str, device_ids: builtins.list[str]) -> ChannelInfo:
        name = _clean_name(name)

        def unit(session: Session) -> ChannelInfo:
            self._name_free(session, name)
            channel = AudioChannel(id=new_id(), name=name, is_default=False, created_at=utcnow())
            self._set_devices(channel, device_ids)
            session.add(channel)
            session.flush()
            return _info(channel)

        return write_retrying(self.db, unit)

    def update(
        self, channel_id: str, name: str | None, device_ids: builtins.list[str] | None
    ) -> ChannelInfo:
        new_name = _clean_name(name) if name is not None else None

        def unit(session: Session) -> ChannelInfo:
            channel = self._get(session, channel_id)
            if channel.is_default:
                raise ConflictError("the default channel cannot be modified")
            if new_name is not None:
                self._name_free(session, new_name, except_id=channel_id)
                channel.name = new_name
            if device_ids is not None:
                self._set_devices(channel, device_ids)
            session.flush()
            return _info(channel)

        return write_retrying(self.db, unit)

    def delete(self, channel_id: str) -> None:
        def unit(session: Session) -> None:
            channel = self._get(session, channel_id)
            if channel.is_default:
                raise ConflictError("the default channel cannot be deleted")
            session.execute(delete(ProfileChannel).where(ProfileChannel.channel_id == channel_id))
            session.delete(channel)

        write_retrying(self.db, unit)

    def channel_voices(self, channel_id: str) -> builtins.list[str]:
        with self.db.read() as session:
            self._get(session, channel_id)
            return list(
                session.scalars(
                    select(ProfileChannel.profile_id)
                    .where(ProfileChannel.channel_id == channel_id)
                    .order_by(ProfileChannel.profile_id)
                )
            )

    def set_channel_voices(self, channel_id: str, profile_ids: builtins.list[str]) -> None:
        wanted = _unique_ids(profile_ids, "profile id")

        def unit(session: Session) -> None:
            self._get(session, channel_id)
            missing = [p for p in wanted if session.get(Profile, p) is None]
            if missing:
                raise NotFoundError(f"profile(s) not found: {', '.join(missing)}")
            session.execute(delete(ProfileChannel).where(ProfileChannel.channel_id == channel_id))
            session.add_all(ProfileChannel(profile_id=p, channel_id=channel_id) for p in wanted)

        write_retrying(self.db, unit)

    def profile_channels(self, profile_id: str) -> builtins.list[str]:
        with self.db.read() as session:
            if session.get(Profile, profile_id) is None:
                raise NotFoundError(f"profile {profile_id} not found")
            return list(
                session.scalars(
                    select(ProfileChannel.channel_id)
                    .where(ProfileChannel.profile_id == profile_id)
                    .order_by(ProfileChannel.channel_id)
                )
            )

    def set_profile_channels(self, profile_id: str, channel_ids: builtins.list[str]) -> None:
        wanted = _unique_ids(channel_ids, "channel id")

        def unit(session: Session) -> None:
            if session.get(Profile, profile_id) is None:
                raise NotFoundError(f"profile {profile_id} not found")
            missing = [c for c in wanted if session.get(AudioChannel, c) is None]
            if missing:
                raise NotFoundError(f"channel(s) not found: {', '.join(missing)}")
            session.execute(delete(ProfileChannel).where(ProfileChannel.profile_id == profile_id))
            session.add_all(ProfileChannel(profile_id=profile_id, channel_id=c) for c in wanted)

        write_retrying(self.db, unit)
