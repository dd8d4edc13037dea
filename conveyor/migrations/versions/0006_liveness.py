"""worker liveness: heartbeat stamp on attempts

Revision ID: 0006_liveness
Revises: 0005_ops
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_liveness"
down_revision = "0005_ops"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table("job_executions") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("job_executions") as batch:
        batch.drop_column("heartbeat_at")
