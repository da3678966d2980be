"""Generations remember the request that made them (idempotent retries of RunPod jobs).

RunPod may deliver a job twice (retry after a worker loss); with the job's id stored as ``request_id``, the
second delivery finds the first generation instead of synthesising and billing it again.

Revision ID: 0002_generation_request_id
Revises: 0001_baseline
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_generation_request_id"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.add_column(sa.Column("request_id", sa.String(128), nullable=True))
        batch.create_index("ix_generations_request_id", ["request_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        batch.drop_index("ix_generations_request_id")
        batch.drop_column("request_id")
