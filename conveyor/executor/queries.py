"""The read side of runs: one run, its steps and attempts, and pages of runs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.kernel.errors import NotFound
from conveyor.kernel.paging import bad_token


def get_run(session: Session, run_id: str) -> RunRow:
    """A run by id."""
    run = session.get(RunRow, run_id)
    if run is None:
        raise NotFound(f"run {run_id!r} not found", metadata={"run_id": run_id})
    return run


def run_steps(session: Session, run_id: str) -> tuple[list[StepRow], dict[str, list[ExecutionRow]]]:
    """A run's steps in plan order with their attempts."""
    steps = list(
        session.scalars(select(StepRow).where(StepRow.run_id == run_id).order_by(StepRow.position))
    )
    executions: dict[str, list[ExecutionRow]] = {}
    for ex in session.scalars(
        select(ExecutionRow).where(ExecutionRow.run_id == run_id).order_by(ExecutionRow.attempt)
    ):
        executions.setdefault(ex.node_id, []).append(ex)
    return steps, executions


def list_runs(
    session: Session,
    *,
    page_size: int,
    after: str,
    job_id: str,
    states: Mapping[str, None] | list[str],
) -> tuple[list[RunRow], str]:
    """Runs newest first; `after` is the page key "created_at|id" of the last run seen."""
    query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(page_size + 1)
    if job_id:
        query = query.where(RunRow.job_id == job_id)
    if states:
        query = query.where(RunRow.state.in_(list(states)))
    if after:
        created_s, _, last_id = after.partition("|")
        try:
            created = datetime.fromisoformat(created_s)
        except ValueError as exc:
            raise bad_token() from exc
        query = query.where(
            (RunRow.created_at < created) | ((RunRow.created_at == created) & (RunRow.id < last_id))
        )
    rows = list(session.scalars(query))
    token = ""
    if len(rows) > page_size:
        last = rows[page_size - 1]
        token = f"{last.created_at.isoformat()}|{last.id}"
    return rows[:page_size], token
