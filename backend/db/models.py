"""The schema, as SQLAlchemy 2.0 typed ORM classes.

Column names follow Voicebox upstream so its clients and exports line up; the extra columns carry what a shared
volume needs (owner worker, lease expiry, hashes, timings). Paths are relative to ``<volume>/voicebox``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from backend.statuses import GenerationStatus

# Alembic batch mode needs named constraints to drop or recreate them on SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Naive UTC, as Voicebox stores it (its clients parse ISO strings without an offset)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Profile(Base):
    __tablename__ = "profiles"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(10), default="en")
    avatar_path: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    #: JSON list of effects applied to every new generation of this profile (``0004``; upstream's column)
    effects_chain: Mapped[str | None] = mapped_column(Text)

    samples: Mapped[list[ProfileSample]] = relationship(
        back_populates="profile",
        order_by="(ProfileSample.created_at, ProfileSample.id)",
        cascade="all, delete-orphan",
    )


class ProfileSample(Base):
    __tablename__ = "profile_samples"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    audio_path: Mapped[str] = mapped_column(String(500))
    reference_text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    duration: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    profile: Mapped[Profile] = relationship(back_populates="samples")

    __table_args__ = (
        Index("ix_profile_samples_profile_created", "profile_id", "created_at", "id"),
    )


class Generation(Base):
    """One synthesis: its history row and, once complete, its audio file.

    Life: ``generating`` (intent row: owner + lease expiry) → ``completed`` (file durable, size + sha256) or
    ``failed`` / ``cancelled``. History survives profile deletion: ``profile_id`` goes NULL, ``profile_name`` stays.
    """

    __tablename__ = "generations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    profile_id: Mapped[str | None] = mapped_column(
        ForeignKey("profiles.id", ondelete="SET NULL"), nullable=True
    )
    profile_name: Mapped[str | None] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(10), default="en")
    audio_path: Mapped[str | None] = mapped_column(String(500))
    duration: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int | None] = mapped_column(Integer)
    instruct: Mapped[str | None] = mapped_column(Text)
    engine: Mapped[str] = mapped_column(String(50), default="qwen")
    model_size: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=GenerationStatus.COMPLETED)
    error: Mapped[str | None] = mapped_column(Text)
    is_favorited: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(50), default="manual")
    request_id: Mapped[str | None] = mapped_column(String(128))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    owner_worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    queue_wait_seconds: Mapped[float | None] = mapped_column(Float)
    model_load_seconds: Mapped[float | None] = mapped_column(Float)
    synthesis_seconds: Mapped[float | None] = mapped_column(Float)
    rtf: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)

    versions: Mapped[list[GenerationVersion]] = relationship(
        back_populates="generation",
        order_by="(GenerationVersion.created_at, GenerationVersion.id)",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )

    __table_args__ = (
        Index("ix_generations_profile_created", "profile_id", "created_at"),
        Index("ix_generations_created", "created_at"),
        Index("ix_generations_status_lease", "status", "lease_expires_at"),
        Index("ix_generations_request_id", "request_id", unique=True),
    )


class AudioChannel(Base):
    """An output channel (bus) of the desktop app: which OS devices play which voices (``0003``).

    The server only stores them (the app plays the audio); one ``is_default`` channel is seeded.
    """

    __tablename__ = "audio_channels"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    devices: Mapped[list[ChannelDevice]] = relationship(
        order_by="ChannelDevice.position", cascade="all, delete-orphan"
    )


class ChannelDevice(Base):
    """One OS audio device id of a channel, in the order the app gave them."""

    __tablename__ = "channel_device_mappings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    channel_id: Mapped[str] = mapped_column(ForeignKey("audio_channels.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(String(500))
    position: Mapped[int] = mapped_column(Integer, default=0)


class ProfileChannel(Base):
    """Which channels a voice profile plays on (many to many)."""

    __tablename__ = "profile_channel_mappings"

    profile_id: Mapped[str] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    channel_id: Mapped[str] = mapped_column(
        ForeignKey("audio_channels.id", ondelete="CASCADE"), primary_key=True
    )


class GenerationSettingsRow(Base):
    """The one row (``id`` 1) of server-side generation defaults (Voicebox's ``/settings/generation``)."""

    __tablename__ = "generation_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    max_chunk_chars: Mapped[int] = mapped_column(Integer, default=800)
    crossfade_ms: Mapped[int] = mapped_column(Integer, default=50)
    normalize_audio: Mapped[bool] = mapped_column(Boolean, default=True)
    autoplay_on_generate: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class GenerationVersion(Base):
    """One audio version of a generation (``0004``, upstream's table): the clean original, an effects-processed
    copy, or another take. Exactly one per generation is ``is_default``, and ``generations.audio_path`` is always
    that version's file, so every reader that knows only the generation keeps working.

    ``text``/``language``/``instruct``/``seed`` are upstream's per-take overrides (NULL: same as the generation).
    """

    __tablename__ = "generation_versions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    generation_id: Mapped[str] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(200))
    audio_path: Mapped[str] = mapped_column(String(500))
    effects_chain: Mapped[str | None] = mapped_column(Text)
    source_version_id: Mapped[str | None] = mapped_column(String(36))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    text: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(10))
    instruct: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int | None] = mapped_column(Integer)
    duration: Mapped[float | None] = mapped_column(Float)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    generation: Mapped[Generation] = relationship(back_populates="versions")


class EffectPreset(Base):
    """A named effects chain (``0004``): the built-in ones are seeded by the migration, users add their own."""

    __tablename__ = "effect_presets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    effects_chain: Mapped[str] = mapped_column(Text)
    is_builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    sort_order: Mapped[int] = mapped_column(Integer, default=100)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Story(Base):
    """A timeline of generations (``0004``, upstream's stories)."""

    __tablename__ = "stories"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    items: Mapped[list[StoryItem]] = relationship(
        order_by="(StoryItem.start_time_ms, StoryItem.id)",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
    )


class StoryItem(Base):
    """One clip of a story: a generation at a time on a track, trimmed, at a volume, maybe pinned to a version.

    A pin whose version is deleted goes NULL (the clip then plays the generation's default version, upstream's
    rule); deleting the generation removes its clips.
    """

    __tablename__ = "story_items"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    story_id: Mapped[str] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"))
    generation_id: Mapped[str] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    version_id: Mapped[str | None] = mapped_column(
        ForeignKey("generation_versions.id", ondelete="SET NULL"), nullable=True
    )
    start_time_ms: Mapped[int] = mapped_column(Integer, default=0)
    track: Mapped[int] = mapped_column(Integer, default=0)
    trim_start_ms: Mapped[int] = mapped_column(Integer, default=0)
    trim_end_ms: Mapped[int] = mapped_column(Integer, default=0)
    volume: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    generation: Mapped[Generation] = relationship(lazy="selectin")

    __table_args__ = (Index("ix_story_items_story_start", "story_id", "start_time_ms"),)
