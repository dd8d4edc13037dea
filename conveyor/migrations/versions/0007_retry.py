"""RetryRun: the run a retry resumes

Revision ID: 0007_retry
Revises: 0006_liveness
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_retry"
down_revision = "0006_liveness"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("retry_of", sa.String(length=32), nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("retry_of")
