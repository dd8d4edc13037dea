"""alert rules and alerts; trace id on attempts

Revision ID: 0005_ops
Revises: 0004_logs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_ops"
down_revision = "0004_logs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("job", sa.String(length=200), nullable=False),
        sa.Column("queue", sa.String(length=128), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("max_duration_s", sa.Float(), nullable=False),
        sa.Column("webhook_urls", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("display_name"),
        sa.UniqueConstraint("request_id"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.String(length=32), nullable=False),
        sa.Column("rule_name", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("last_delivery_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alerts_rule_subject_state", "alerts", ["rule_id", "subject", "state"])
    op.create_index("ix_alerts_fired_at", "alerts", ["fired_at"])
    with op.batch_alter_table("job_executions") as batch_op:
        batch_op.add_column(
            sa.Column("trace_id", sa.String(length=32), nullable=False, server_default="")
        )


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("job_executions") as batch_op:
        batch_op.drop_column("trace_id")
    op.drop_index("ix_alerts_fired_at", table_name="alerts")
    op.drop_index("ix_alerts_rule_subject_state", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
