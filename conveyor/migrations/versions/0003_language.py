"""language: approval and retry wake-ups, sub-workflow parent links

Revision ID: 0003_language
Revises: 0002_scheduler
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_language"
down_revision = "0002_scheduler"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table("job_run_steps") as batch:
        batch.add_column(sa.Column("wake_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("child_run_id", sa.String(length=32), nullable=True))
        batch.create_index("ix_job_run_steps_wake_at", ["wake_at"])
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("parent_run_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("parent_node_id", sa.String(length=64), nullable=True))
        batch.create_index("ix_job_runs_parent_run_id", ["parent_run_id"])


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_index("ix_job_runs_parent_run_id")
        batch.drop_column("parent_node_id")
        batch.drop_column("parent_run_id")
    with op.batch_alter_table("job_run_steps") as batch:
        batch.drop_index("ix_job_run_steps_wake_at")
        batch.drop_column("child_run_id")
        batch.drop_column("wake_at")
