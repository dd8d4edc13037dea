"""Jobs list their node count without loading plans

Revision ID: 0013_job_node_count
Revises: 0010_recovery
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0013_job_node_count"
down_revision = "0010_recovery"
branch_labels = None
depends_on = None


def _count(plan: Any) -> int:
    if isinstance(plan, str):
        plan = json.loads(plan)
    nodes = plan.get("nodes") if isinstance(plan, dict) else None
    return len(nodes) if isinstance(nodes, dict | list) else 0


def upgrade() -> None:
    """Apply: a node_count column on job_versions, filled from the stored plans."""
    with op.batch_alter_table("job_versions") as batch:
        batch.add_column(sa.Column("node_count", sa.Integer(), nullable=False, server_default="0"))
    bind = op.get_bind()
    versions = sa.table(
        "job_versions", sa.column("id", sa.String), sa.column("plan", sa.JSON),
        sa.column("node_count", sa.Integer),
    )
    rows = bind.execute(sa.select(versions.c.id, versions.c.plan)).all()
    for row_id, plan in rows:
        bind.execute(
            versions.update().where(versions.c.id == row_id).values(node_count=_count(plan))
        )


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("job_versions") as batch:
        batch.drop_column("node_count")
