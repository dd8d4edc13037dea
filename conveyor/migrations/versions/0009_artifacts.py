"""Artifact service: tables job_artifacts, retention_policies, retention_pending

Revision ID: 0009_artifacts
Revises: 0008_auth
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_artifacts"
down_revision = "0008_auth"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "job_artifacts",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("node_id", sa.String(length=200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("storage_key", sa.String(length=512), nullable=False, unique=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_job_artifacts_run_node", "job_artifacts", ["run_id", "node_id", "attempt"])
    op.create_index("ix_job_artifacts_state", "job_artifacts", ["state"])
    op.create_index("ix_job_artifacts_created_at", "job_artifacts", ["created_at"])
    op.create_table(
        "retention_policies",
        sa.Column("job_id", sa.String(length=32), primary_key=True),
        sa.Column("keep_runs_for_s", sa.Float(), nullable=True),
        sa.Column("keep_last_runs", sa.Integer(), nullable=False),
        sa.Column("keep_artifacts_for_s", sa.Float(), nullable=True),
        sa.Column("archive", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "retention_pending",
        sa.Column("run_id", sa.String(length=32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Revert."""
    op.drop_table("retention_pending")
    op.drop_table("retention_policies")
    op.drop_table("job_artifacts")
