"""Generation settings and audio channels (Voicebox's ``/settings/generation`` and ``/channels``).

Plain ``create_table``/``insert`` only (no SQLite-specific SQL), so the revision is portable; the seeded
"Default" channel is the one the desktop app expects to find (it refuses to edit or delete it), and every
existing profile is put on it, as Voicebox does when it creates that channel.

Revision ID: 0003_settings_and_channels
Revises: 0002_generation_request_id
Create Date: 2026-11-29
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003_settings_and_channels"
down_revision = "0002_generation_request_id"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generation_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("max_chunk_chars", sa.Integer(), nullable=False),
        sa.Column("crossfade_ms", sa.Integer(), nullable=False),
        sa.Column("normalize_audio", sa.Boolean(), nullable=False),
        sa.Column("autoplay_on_generate", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_generation_settings"),
    )
    channels = op.create_table(
        "audio_channels",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audio_channels"),
        sa.UniqueConstraint("name", name="uq_audio_channels_name"),
    )
    op.create_table(
        "channel_device_mappings",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.Column("device_id", sa.String(500), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["audio_channels.id"],
            name="fk_channel_device_mappings_channel_id_audio_channels",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_channel_device_mappings"),
    )
    op.create_table(
        "profile_channel_mappings",
        sa.Column("profile_id", sa.String(36), nullable=False),
        sa.Column("channel_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["profiles.id"],
            name="fk_profile_channel_mappings_profile_id_profiles",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["audio_channels.id"],
            name="fk_profile_channel_mappings_channel_id_audio_channels",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("profile_id", "channel_id", name="pk_profile_channel_mappings"),
    )
    default_id = str(uuid.uuid4())
    now = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(
        channels, [{"id": default_id, "name": "Default", "is_default": True, "created_at": now}]
    )
    profiles = sa.table("profiles", sa.column("id", sa.String(36)))
    mappings = sa.table(
        "profile_channel_mappings",
        sa.column("profile_id", sa.String(36)),
        sa.column("channel_id", sa.String(36)),
    )
    op.execute(
        mappings.insert().from_select(
            ["profile_id", "channel_id"],
            # inlined (a uuid4 we made): offline ``--sql`` output then needs no bound parameter
            sa.select(profiles.c.id, sa.literal_column(f"'{default_id}'", sa.String(36))),
        )
    )


def downgrade() -> None:
    op.drop_table("profile_channel_mappings")
    op.drop_table("channel_device_mappings")
    op.drop_table("audio_channels")
    op.drop_table("generation_settings")
