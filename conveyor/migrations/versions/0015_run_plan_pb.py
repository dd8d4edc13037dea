"""Runs keep their plan as the translator's typed message

Revision ID: 0015_run_plan_pb
Revises: 0014_rendered_inputs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_run_plan_pb"
down_revision = "0014_rendered_inputs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply: job_runs.plan_pb (the serialized conveyor.translator.v1.Plan of new runs); the
    JSON column `plan` stays for runs made before and may be NULL from now on."""
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("plan_pb", sa.LargeBinary(), nullable=True))
        batch.alter_column("plan", existing_type=sa.JSON(), nullable=True)


def downgrade() -> None:
    """Revert (a run made since keeps no JSON plan: its plan is decoded back into it)."""
    from conveyor.translator.v1 import translator_pb2
    from conveyor.translator.wire import plan_from_pb

    bind = op.get_bind()
    runs = sa.table(
        "job_runs",
        sa.column("id", sa.String()),
        sa.column("plan", sa.JSON()),
        sa.column("plan_pb", sa.LargeBinary()),
    )
    rows = bind.execute(sa.select(runs.c.id, runs.c.plan_pb).where(runs.c.plan_pb.is_not(None))).all()
    for run_id, data in rows:
        plan = plan_from_pb(translator_pb2.Plan.FromString(data)) if data else {}
        bind.execute(runs.update().where(runs.c.id == run_id).values(plan=plan))
    with op.batch_alter_table("job_runs") as batch:
        batch.alter_column("plan", existing_type=sa.JSON(), nullable=False)
        batch.drop_column("plan_pb")
