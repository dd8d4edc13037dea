"""Sub-workflow runs: the parent-chain check before a child starts, its result once it ends."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.executor.effects import JobPlan, Result
from conveyor.executor.engine import RunState
from conveyor.executor.models import RunRow, StepRow
from conveyor.kernel.errors import FailedPrecondition, NotFound

#: How many sub-workflow runs may be nested under a top-level run.
MAX_SUBWORKFLOW_DEPTH = 10
#: Budget (JSON characters) for the child step outputs a sub-workflow step exposes.
MAX_CHILD_OUTPUTS_CHARS = 1024 * 1024


def check_parent_chain(
    session: Session, parent_run_id: str, job: JobPlan, *, max_depth: int
) -> None:
    """Refuse a sub-workflow run whose job already runs above it, or that nests too deep."""
    chain: list[tuple[str, str]] = []
    current: str | None = parent_run_id
    while current is not None:
        row = session.execute(
            select(RunRow.job_id, RunRow.job_name, RunRow.parent_run_id).where(RunRow.id == current)
        ).first()
        if row is None:
            raise NotFound(f"parent run {current!r} not found", metadata={"run_id": current})
        chain.append((row[0], row[1]))
        if len(chain) > max_depth:
            raise FailedPrecondition(
                f"sub-workflow runs nest deeper than {max_depth} levels",
                reason="SUBWORKFLOW_TOO_DEEP",
            )
        current = row[2]
    names = [name for _id, name in reversed(chain)]
    if any(job_id == job.job_id for job_id, _name in chain):
        cycle = " -> ".join([*names[names.index(job.name) :], job.name])
        raise FailedPrecondition(
            f"sub-workflow cycle: job {job.name!r} is already running above this step ({cycle})",
            reason="SUBWORKFLOW_CYCLE",
        )


def child_result(session: Session, child: RunRow) -> Result:
    """A sub-workflow step's result from its child run, once the child has ended."""
    outputs: dict[str, Any] = {}
    budget = MAX_CHILD_OUTPUTS_CHARS
    truncated = False
    first_category: str | None = None
    for node_id, step_outputs, category in session.execute(
        select(StepRow.node_id, StepRow.outputs, StepRow.error_category)
        .where(StepRow.run_id == child.id)
        .order_by(StepRow.position)
    ):
        first_category = first_category or category
        if step_outputs is None:
            continue
        size = len(json.dumps(step_outputs, default=str))
        if size > budget:
            truncated = True
            continue
        budget -= size
        outputs[node_id] = step_outputs
    state = RunState(child.state)
    result_outputs = {
        "run_id": child.id,
        "status": state.value,
        "outputs": outputs,
        "outputs_truncated": truncated,
    }
    if state == RunState.SUCCEEDED:
        return Result(succeeded=True, outputs=result_outputs)
    category = "CANCELLED" if state == RunState.CANCELLED else (first_category or "INTERNAL")
    return Result(
        succeeded=False,
        outputs=result_outputs,
        error_category=category,
        error_message=f"sub-workflow run {child.id} ({child.job_name}) ended "
        f"{state.value}: {child.error_message}".rstrip(": "),
    )
