"""Steps that wait without a worker: approvals, sub-workflow runs and retry backoffs.

A waiting step is WAITING in the database and holds no broker message and no worker slot.
It moves on when a person decides (`decide_approval`), when its child run ends
(`runs.notify_parent`), or when its `wake_at` passes: the executor's sweeper then queues a
retry's next attempt, or fails an approval or a sub-workflow wait with TIMEOUT (`wake_step`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conveyor.executor import engine, runs
from conveyor.executor.engine import RunState, StepState
from conveyor.executor.models import RunRow, StepRow
from conveyor.kernel.errors import FailedPrecondition, InvalidArgument, NotFound, Violation
from conveyor.kernel.ids import as_utc
from conveyor.shared import nodetypes as nt

APPROVAL = nt.APPROVAL
SUBWORKFLOW = nt.SUBWORKFLOW
MAX_COMMENT = 4096
MAX_APPROVER = 200


def _running_step(
    session: Session, run_id: str, node_id: str, attempt: int
) -> tuple[runs.RunTx | None, StepRow | None, runs.Effects]:
    effects = runs.Effects()
    run = runs.lock_run(session, run_id)
    step = runs.StepCache.of(session, run_id).get(node_id)
    if (
        run.state in engine.TERMINAL_RUN
        or step.state != StepState.RUNNING
        or step.attempt != attempt
    ):
        return None, None, effects
    return runs.RunTx(session, run, effects), step, effects


def begin_approval(
    session: Session,
    run_id: str,
    node_id: str,
    attempt: int,
    *,
    message: str,
    timeout_s: float | None,
) -> runs.Effects:
    """A claimed approval step starts waiting for a decision (until its timeout, if any)."""
    tx, step, effects = _running_step(session, run_id, node_id, attempt)
    if tx is None or step is None:
        return effects
    step.outputs = {"message": message}
    step.wake_at = tx.now + timedelta(seconds=timeout_s) if timeout_s else None
    tx.set_step(
        step,
        StepState.WAITING,
        message or "waiting for approval",
        waiting_for="approval",
        timeout_s=timeout_s,
    )
    runs.refresh_activity(tx)
    return effects


def begin_child_wait(
    session: Session,
    run_id: str,
    node_id: str,
    attempt: int,
    *,
    child_run_id: str,
    timeout_s: float | None,
    rand: Callable[[], float],
) -> runs.Effects:
    """A sub-workflow step waits for its child run (settled at once if it already ended)."""
    tx, step, effects = _running_step(session, run_id, node_id, attempt)
    if tx is None or step is None:
        return effects
    step.child_run_id = child_run_id
    step.wake_at = tx.now + timedelta(seconds=timeout_s) if timeout_s else None
    tx.set_step(
        step,
        StepState.WAITING,
        f"waiting for sub-workflow run {child_run_id}",
        waiting_for="subworkflow",
        child_run_id=child_run_id,
    )
    runs.refresh_activity(tx)
    child = session.get(RunRow, child_run_id)
    if child is not None and child.state in engine.TERMINAL_RUN:
        runs.settle_attempt(
            tx,
            node_id,
            attempt,
            runs.child_result(session, child),
            rand=rand,
            expect=StepState.WAITING,
        )
    return effects


def decide_approval(
    session: Session,
    run_id: str,
    node_id: str,
    *,
    approve: bool,
    comment: str,
    approver: str,
) -> tuple[RunRow, runs.Effects]:
    """Approve (step succeeds) or reject (step fails with REJECTED) a waiting approval."""
    violations = []
    if len(comment) > MAX_COMMENT:
        violations.append(Violation("comment", f"at most {MAX_COMMENT} characters", "TOO_LONG"))
    if len(approver) > MAX_APPROVER:
        violations.append(Violation("approver", f"at most {MAX_APPROVER} characters", "TOO_LONG"))
    if violations:
        raise InvalidArgument("invalid ApproveStep request", violations=violations)
    effects = runs.Effects()
    run = runs.lock_run(session, run_id)
    node = run.plan["nodes"].get(node_id)
    if node is None:
        raise NotFound(
            f"run {run_id!r} has no node {node_id!r}",
            metadata={"run_id": run_id, "node_id": node_id},
        )
    if node["type"] != APPROVAL:
        raise InvalidArgument(
            f"node {node_id!r} is a {node['type']}, not an action.approval",
            violations=[Violation("node_id", "not an approval node", "NOT_APPROVAL")],
        )
    step = runs.StepCache.of(session, run_id).get(node_id)
    if step.state != StepState.WAITING:
        raise FailedPrecondition(
            f"step {node_id!r} is {step.state}, not waiting for a decision",
            reason="STEP_NOT_WAITING",
        )
    who = approver or "anonymous"
    message = str((step.outputs or {}).get("message") or "")
    outputs: dict[str, Any] = {
        "approved": approve,
        "by": who,
        "comment": comment,
        "message": message,
    }
    if approve:
        result = runs.Result(succeeded=True, outputs=outputs)
    else:
        reason = f": {comment}" if comment else ""
        result = runs.Result(
            succeeded=False,
            outputs=outputs,
            error_category="REJECTED",
            error_message=f"rejected by {who}{reason}",
        )
    runs.settle_attempt(
        runs.RunTx(session, run, effects),
        node_id,
        step.attempt,
        result,
        rand=random.random,
        expect=StepState.WAITING,
    )
    return run, effects


def due_wakeups(session: Session, *, now: datetime, limit: int = 500) -> list[tuple[str, str]]:
    """(run_id, node_id) of WAITING steps whose wake-up time has passed."""
    rows = session.execute(
        select(StepRow.run_id, StepRow.node_id)
        .where(StepRow.state == StepState.WAITING, StepRow.wake_at <= now)
        .order_by(StepRow.wake_at)
        .limit(limit)
    ).all()
    return [(r, n) for r, n in rows]


def wake_step(
    session: Session, run_id: str, node_id: str, *, rand: Callable[[], float]
) -> runs.Effects:
    """Act on a due WAITING step: queue a retry, or time out an approval or a child wait."""
    effects = runs.Effects()
    run = runs.lock_run(session, run_id)
    step = runs.StepCache.of(session, run_id).get(node_id)
    tx = runs.RunTx(session, run, effects)
    wake_at = step.wake_at
    if (
        run.state in engine.TERMINAL_RUN
        or step.state != StepState.WAITING
        or wake_at is None
        or (as_utc(wake_at) or tx.now) > tx.now
    ):
        return effects
    step.wake_at = None
    if step.node_type == APPROVAL or step.child_run_id:
        node = run.plan["nodes"][node_id]
        if step.node_type == APPROVAL:
            timeout = node["data"].get("timeout_s")
            message = f"no decision within {timeout}s: approval timed out"
        else:
            timeout = node.get("timeout_s")
            message = f"sub-workflow run {step.child_run_id} did not end within {timeout}s"
            effects.cancel_runs.append(step.child_run_id or "")
        outputs = dict(step.outputs or {})
        if step.node_type == APPROVAL:
            outputs.update(approved=False, by="", comment="")
        runs.settle_attempt(
            tx,
            node_id,
            step.attempt,
            runs.Result(
                succeeded=False,
                outputs=outputs,
                error_category="TIMEOUT",
                error_message=message,
            ),
            rand=rand,
            expect=StepState.WAITING,
        )
        return effects
    tx.queue_step(step)
    if run.state == RunState.WAITING:
        tx.set_run(RunState.RUNNING)
    tx.drain()
    return effects
