"""Attempts keep the node's data as they rendered it

Revision ID: 0014_rendered_inputs
Revises: 0013_job_node_count
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_rendered_inputs"
down_revision = "0013_job_node_count"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply: a rendered_inputs column on job_executions (NULL for earlier attempts)."""
    with op.batch_alter_table("job_executions") as batch:
        batch.add_column(sa.Column("rendered_inputs", sa.Text(), nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("job_executions") as batch:
        batch.drop_column("rendered_inputs")
