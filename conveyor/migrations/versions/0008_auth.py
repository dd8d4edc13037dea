"""Access control: API tokens and webhook secrets (owned by the gateway); who started a run,
who changed a schedule or alert rule

Revision ID: 0008_auth
Revises: 0007_retry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_auth"
down_revision = "0007_retry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("name", sa.String(length=100), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column("role", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "webhook_secrets",
        sa.Column("job_id", sa.String(length=32), primary_key=True),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("started_by", sa.String(length=100), nullable=True))
    for table in ("job_schedules", "alert_rules"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("updated_by", sa.String(length=100), nullable=True))


def downgrade() -> None:
    """Revert."""
    for table in ("alert_rules", "job_schedules"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("updated_by")
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("started_by")
    op.drop_table("webhook_secrets")
    op.drop_table("api_tokens")
