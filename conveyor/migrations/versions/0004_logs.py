"""global run-change feed (WatchRuns)

Revision ID: 0004_logs
Revises: 0003_language
Create Date: 2026-11-29 05:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_logs"
down_revision = "0003_language"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "run_feed",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("run_sequence", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("job_name", sa.String(length=200), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("run_state", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("position"),
    )
    op.create_index("ix_run_feed_job_id", "run_feed", ["job_id"], unique=False)
    head = op.create_table(
        "run_feed_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(head, [{"id": 1, "position": 0}])


def downgrade() -> None:
    """Revert."""
    op.drop_table("run_feed_head")
    op.drop_index("ix_run_feed_job_id", table_name="run_feed")
    op.drop_table("run_feed")
