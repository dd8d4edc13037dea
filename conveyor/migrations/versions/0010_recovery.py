"""Recovery: a partial index on running attempts for the once-a-second liveness sweep

Revision ID: 0010_recovery
Revises: 0009_artifacts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_recovery"
down_revision = "0009_artifacts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_index(
        "ix_job_executions_running",
        "job_executions",
        ["heartbeat_at"],
        postgresql_where=sa.text("state = 'RUNNING'"),
        sqlite_where=sa.text("state = 'RUNNING'"),
    )


def downgrade() -> None:
    """Revert."""
    op.drop_index("ix_job_executions_running", table_name="job_executions")
