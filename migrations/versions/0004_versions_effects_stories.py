"""Generation versions, effect presets, profile effects chains, stories and story items (upstream's tables).

Portable DDL only (``create_table``, ``add_column``, ``INSERT … SELECT``, ``drop_column`` on the way
down), so the revision runs on SQLite and PostgreSQL alike. Every completed generation gets its one version: the
``original``, default, with the generation's own id as the version id (a portable, deterministic choice —
no UUID function in SQL) and its file, so ``generations.audio_path`` is the default version's file from the
start. The built-in effect presets are seeded from a frozen copy below (a migration must not change when the
code's registry does).

Downgrade drops the tables and the column: the generations keep their default version's file; the other
versions' files stay on the volume unreferenced, where ``volume fsck`` moves them to trash (never deletes).

Revision ID: 0004_versions_effects_stories
Revises: 0003_settings_and_channels
Create Date: 2026-11-29
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004_versions_effects_stories"
down_revision = "0003_settings_and_channels"
branch_labels = None
depends_on = None


def _fx(kind: str, **params: float) -> dict[str, object]:
    return {"type": kind, "enabled": True, "params": params}


#: (id, name, sort order, description, chain) — frozen at this revision; ids are fixed so every volume
#: (and an adopted upstream library, which has the same built-ins under its own ids) agrees on them
BUILTIN_PRESETS = [
    (
        "00000000-0000-4000-8000-00000000f001",
        "Robotic",
        0,
        "Metallic robotic voice (flanger with slow LFO and high feedback)",
        [_fx("chorus", rate_hz=0.2, depth=1.0, feedback=0.35, centre_delay_ms=7.0, mix=0.5)],
    ),
    (
        "00000000-0000-4000-8000-00000000f002",
        "Radio",
        1,
        "Thin AM-radio voice with band-pass filtering and light compression",
        [
            _fx("highpass", cutoff_frequency_hz=300.0),
            _fx("lowpass", cutoff_frequency_hz=3500.0),
            _fx("compressor", threshold_db=-15.0, ratio=6.0, attack_ms=5.0, release_ms=50.0),
            _fx("gain", gain_db=6.0),
        ],
    ),
    (
        "00000000-0000-4000-8000-00000000f003",
        "Echo Chamber",
        2,
        "Spacious reverb with trailing echo",
        [
            _fx("reverb", room_size=0.85, damping=0.3, wet_level=0.45, dry_level=0.55, width=1.0),
            _fx("delay", delay_seconds=0.25, feedback=0.3, mix=0.2),
        ],
    ),
    (
        "00000000-0000-4000-8000-00000000f004",
        "Warm Voice",
        5,
        "Warm analog-style voice with subtle saturation",
        [
            _fx("distortion", drive_db=6.0),
            _fx("lowpass", cutoff_frequency_hz=8000.0),
            _fx("compressor", threshold_db=-15.0, ratio=2.5, attack_ms=10.0, release_ms=200.0),
            _fx("gain", gain_db=3.0),
        ],
    ),
    (
        "00000000-0000-4000-8000-00000000f005",
        "Tape",
        6,
        "Vintage tape recorder character",
        [
            _fx("distortion", drive_db=12.0),
            _fx("highpass", cutoff_frequency_hz=60.0),
            _fx("lowpass", cutoff_frequency_hz=12000.0),
            _fx("chorus", rate_hz=0.3, depth=0.1, centre_delay_ms=7.0, feedback=0.05, mix=0.15),
            _fx("compressor", threshold_db=-18.0, ratio=3.0, attack_ms=5.0, release_ms=150.0),
        ],
    ),
    (
        "00000000-0000-4000-8000-00000000f006",
        "Natural",
        7,
        "Clean natural voice with noise reduction",
        [
            _fx("noise_gate", threshold_db=-40.0, ratio=10.0, attack_ms=1.0, release_ms=100.0),
            _fx("compressor", threshold_db=-20.0, ratio=2.0, attack_ms=15.0, release_ms=200.0),
            _fx("limiter", threshold_db=-1.0, release_ms=100.0),
        ],
    ),
    (
        "00000000-0000-4000-8000-00000000f007",
        "Emotion: Energetic",
        8,
        "Energetic and upbeat vocal style",
        [
            _fx("pitch_shift", semitones=1.0),
            _fx("compressor", threshold_db=-15.0, ratio=3.0, attack_ms=2.0, release_ms=100.0),
            _fx("gain", gain_db=2.0),
        ],
    ),
    (
        "00000000-0000-4000-8000-00000000f008",
        "Emotion: Calm",
        9,
        "Calm and soothing vocal tone",
        [
            _fx("pitch_shift", semitones=-0.5),
            _fx("lowpass", cutoff_frequency_hz=7000.0),
            _fx("reverb", room_size=0.2, damping=0.7, wet_level=0.1, dry_level=0.9, width=0.5),
        ],
    ),
    (
        "00000000-0000-4000-8000-00000000f009",
        "Deep Voice",
        99,
        "Lower pitch with added warmth",
        [
            _fx("pitch_shift", semitones=-3.0),
            _fx("lowpass", cutoff_frequency_hz=6000.0),
            _fx("compressor", threshold_db=-18.0, ratio=3.0, attack_ms=10.0, release_ms=150.0),
        ],
    ),
]


def upgrade() -> None:
    op.add_column("profiles", sa.Column("effects_chain", sa.Text(), nullable=True))
    versions = op.create_table(
        "generation_versions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("generation_id", sa.String(36), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("audio_path", sa.String(500), nullable=False),
        sa.Column("effects_chain", sa.Text(), nullable=True),
        sa.Column("source_version_id", sa.String(36), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("language", sa.String(10), nullable=True),
        sa.Column("instruct", sa.Text(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            name="fk_generation_versions_generation_id_generations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_generation_versions"),
    )
    op.create_index(
        "ix_generation_versions_generation_id", "generation_versions", ["generation_id"]
    )
    presets = op.create_table(
        "effect_presets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("effects_chain", sa.Text(), nullable=False),
        sa.Column("is_builtin", sa.Boolean(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_effect_presets"),
        sa.UniqueConstraint("name", name="uq_effect_presets_name"),
    )
    op.create_table(
        "stories",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stories"),
    )
    op.create_table(
        "story_items",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("story_id", sa.String(36), nullable=False),
        sa.Column("generation_id", sa.String(36), nullable=False),
        sa.Column("version_id", sa.String(36), nullable=True),
        sa.Column("start_time_ms", sa.Integer(), nullable=False),
        sa.Column("track", sa.Integer(), nullable=False),
        sa.Column("trim_start_ms", sa.Integer(), nullable=False),
        sa.Column("trim_end_ms", sa.Integer(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["story_id"],
            ["stories.id"],
            name="fk_story_items_story_id_stories",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            name="fk_story_items_generation_id_generations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["generation_versions.id"],
            name="fk_story_items_version_id_generation_versions",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_story_items"),
    )
    op.create_index("ix_story_items_story_start", "story_items", ["story_id", "start_time_ms"])

    now = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(
        presets,
        [
            {
                "id": preset_id,
                "name": name,
                "description": description,
                "effects_chain": json.dumps(chain),
                "is_builtin": True,
                "sort_order": order,
                "created_at": now,
            }
            for preset_id, name, order, description, chain in BUILTIN_PRESETS
        ],
    )
    generations = sa.table(
        "generations",
        sa.column("id", sa.String(36)),
        sa.column("audio_path", sa.String(500)),
        sa.column("duration", sa.Float()),
        sa.column("sha256", sa.String(64)),
        sa.column("size_bytes", sa.Integer()),
        sa.column("status", sa.String(20)),
        sa.column("created_at", sa.DateTime()),
    )
    g = generations.c
    op.execute(
        versions.insert().from_select(
            [
                "id",
                "generation_id",
                "label",
                "audio_path",
                "is_default",
                "duration",
                "sha256",
                "size_bytes",
                "created_at",
            ],
            sa.select(
                g.id,
                g.id,
                sa.literal_column("'original'", sa.String(200)),
                g.audio_path,
                sa.true(),
                g.duration,
                g.sha256,
                g.size_bytes,
                g.created_at,
            ).where(g.status == sa.literal_column("'completed'"), g.audio_path.is_not(None)),
        )
    )


def downgrade() -> None:
    op.drop_table("story_items")
    op.drop_table("stories")
    op.drop_table("effect_presets")
    op.drop_table("generation_versions")
    # a plain DROP COLUMN (SQLite >= 3.35 has it): a batch copy of ``profiles`` would need reflection
    op.drop_column("profiles", "effects_chain")
