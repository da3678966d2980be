"""Voicebox's audio channels: ``/channels*`` and ``/profiles/{id}/channels``, stored in the database."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from backend.api.deps import get_services
from backend.schemas import UtcDatetime
from backend.services.channels import ChannelInfo
from backend.services.container import Services

router = APIRouter(tags=["channels"])

DeviceIds = list[str]


class AudioChannelCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    device_ids: DeviceIds = Field(default_factory=list, max_length=1000)


class AudioChannelUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    device_ids: DeviceIds | None = Field(default=None, max_length=1000)


class AudioChannelResponse(BaseModel):
    id: str
    name: str
    is_default: bool
    device_ids: list[str]
    created_at: UtcDatetime


class ChannelVoiceAssignment(BaseModel):
    profile_ids: list[str] = Field(max_length=1000)


class ProfileChannelAssignment(BaseModel):
    channel_ids: list[str] = Field(max_length=1000)


def _answer(info: ChannelInfo) -> AudioChannelResponse:
    return AudioChannelResponse(**info.__dict__)


@router.get("/channels", response_model=list[AudioChannelResponse])
def list_channels(services: Services = Depends(get_services)) -> list[AudioChannelResponse]:
    return [_answer(c) for c in services.channels.list()]


@router.post("/channels", response_model=AudioChannelResponse)
def create_channel(
    body: AudioChannelCreate, services: Services = Depends(get_services)
) -> AudioChannelResponse:
    return _answer(services.channels.create(body.name, body.device_ids))


@router.get("/channels/{channel_id}", response_model=AudioChannelResponse)
def get_channel(
    channel_id: str, services: Services = Depends(get_services)
) -> AudioChannelResponse:
    return _answer(services.channels.get(channel_id))


@router.put("/channels/{channel_id}", response_model=AudioChannelResponse)
def update_channel(
    channel_id: str, body: AudioChannelUpdate, services: Services = Depends(get_services)
) -> AudioChannelResponse:
    return _answer(services.channels.update(channel_id, body.name, body.device_ids))


@router.delete("/channels/{channel_id}")
def delete_channel(channel_id: str, services: Services = Depends(get_services)) -> dict[str, str]:
    services.channels.delete(channel_id)
    return {"message": "Channel deleted successfully"}


@router.get("/channels/{channel_id}/voices")
def get_channel_voices(
    channel_id: str, services: Services = Depends(get_services)
) -> dict[str, list[str]]:
    return {"profile_ids": services.channels.channel_voices(channel_id)}


@router.put("/channels/{channel_id}/voices")
def set_channel_voices(
    channel_id: str, body: ChannelVoiceAssignment, services: Services = Depends(get_services)
) -> dict[str, str]:
    services.channels.set_channel_voices(channel_id, body.profile_ids)
    return {"message": "Channel voices updated successfully"}


@router.get("/profiles/{profile_id}/channels")
def get_profile_channels(
    profile_id: str, services: Services = Depends(get_services)
) -> dict[str, list[str]]:
    return {"channel_ids": services.channels.profile_channels(profile_id)}


@router.put("/profiles/{profile_id}/channels")
def set_profile_channels(
    profile_id: str, body: ProfileChannelAssignment, services: Services = Depends(get_services)
) -> dict[str, str]:
    services.channels.set_profile_channels(profile_id, body.channel_ids)
    return {"message": "Profile channels updated successfully"}
