"""The executor's unit-of-work functions: start, claim, finish and cancel steps and runs.

Each function takes a session inside an open transaction, locks the run row first (so a run's
state changes and event sequence numbers are serialised), and returns the effects to carry
out after commit: events to publish and step messages to send to Celery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from conveyor.executor import engine
from conveyor.executor.engine import Decision, RunState, StepState, StepView
from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.kernel import outbox
from conveyor.kernel.errors import NotFound
from conveyor.kernel.ids import as_utc, new_id, utcnow
from conveyor.kernel.outbox import Event

TERMINAL_STEP_VALUES = [s.value for s in engine.TERMINAL_STEP]


@dataclass(frozen=True)
class Dispatch:
    """A Celery message to send: run step node_id of run_id, attempt N."""

    run_id: str
    node_id: str
    attempt: int
    queue: str
    priority: int = 0
    countdown: float = 0.0


@dataclass
class Effects:
    """What to do after commit."""

    events: list[Event] = field(default_factory=list)
    dispatch: list[Dispatch] = field(default_factory=list)


@dataclass(frozen=True)
class JobPlan:
    """The job version a run executes (from the translator)."""

    job_id: str
    name: str
    version: int
    plan: dict[str, Any]


@dataclass(frozen=True)
class Claim:
    """A step a worker may now execute, with what it needs to do so."""

    node: dict[str, Any]
    scope: dict[str, Any]
    attempt: int


@dataclass(frozen=True)
class Result:
    """How an attempt ended, as recorded by the worker."""

    succeeded: bool
    outputs: dict[str, Any]
    error_category: str | None = None
    error_message: str | None = None
    handle: str | None = None
    exit_code: int | None = None
    wall_s: float | None = None
    cpu_user_s: float | None = None
    cpu_system_s: float | None = None
    max_rss_kb: int | None = None


class RunTx:
    """The locked run within one transaction: state changes that emit outbox events."""

    def __init__(self, session: Session, run: RunRow, effects: Effects) -> None:
        self.session = session
        self.run = run
        self.effects = effects
        self.now = utcnow()

    def emit(self, type_: str, **fields: Any) -> None:
        """Append the run's next event to the outbox."""
        self.run.event_seq += 1
        ev = Event(
            run_id=self.run.id, sequence=self.run.event_seq, type=type_, time=self.now, **fields
        )
        outbox.append(self.session, ev)
        self.effects.events.append(ev)

    def set_run(self, state: RunState, message: str = "") -> None:
        """Move the run to a state (no-op when already there)."""
        if self.run.state == state:
            return
        self.run.state = state
        if state == RunState.RUNNING and self.run.started_at is None:
            self.run.started_at = self.now
        if state in engine.TERMINAL_RUN:
            self.run.ended_at = self.now
            self.run.error_message = message
        self.emit(outbox.RUN_STATE_CHANGED, run_state=state.value, message=message)

    def set_step(self, step: StepRow, state: StepState, message: str = "", **data: Any) -> None:
        """Move a step to a state and emit its event."""
        step.state = state
        if state == StepState.QUEUED:
            step.queued_at = self.now
        elif state == StepState.RUNNING and step.started_at is None:
            step.started_at = self.now
        elif state in engine.TERMINAL_STEP:
            step.ended_at = self.now
        self.emit(
            outbox.STEP_STATE_CHANGED,
            node_id=step.node_id,
            step_state=state.value,
            attempt=step.attempt,
            message=message,
            data={k: v for k, v in data.items() if v is not None},
        )

    def queue_step(self, step: StepRow, *, countdown: float = 0.0) -> None:
        """Mark a step QUEUED for its next attempt and schedule its message."""
        step.attempt += 1
        self.set_step(step, StepState.QUEUED)
        self.effects.dispatch.append(
            Dispatch(
                self.run.id, step.node_id, step.attempt, step.queue, self.run.priority, countdown
            )
        )


def lock_run(session: Session, run_id: str) -> RunRow:
    """Load and lock a run row (SELECT … FOR UPDATE; SQLite's write lock is already held)."""
    run = session.scalar(select(RunRow).where(RunRow.id == run_id).with_for_update())
    if run is None:
        raise NotFound(f"run {run_id!r} not found", metadata={"run_id": run_id})
    return run


class StepCache:
    """Step rows of one run, loaded in batches on demand within a transaction."""

    def __init__(self, session: Session, run_id: str) -> None:
        self._session = session
        self._run_id = run_id
        self._rows: dict[str, StepRow] = {}

    def load(self, node_ids: Iterable[str]) -> None:
        """Fetch the rows not loaded yet in one query."""
        missing = [n for n in set(node_ids) if n not in self._rows]
        for chunk in (missing[i : i + 500] for i in range(0, len(missing), 500)):
            for row in self._session.scalars(
                select(StepRow).where(StepRow.run_id == self._run_id, StepRow.node_id.in_(chunk))
            ):
                self._rows[row.node_id] = row

    def get(self, node_id: str) -> StepRow:
        """One step row."""
        if node_id not in self._rows:
            self.load([node_id])
        return self._rows[node_id]

    def view(self, node_id: str) -> StepView:
        """The engine's view of a step."""
        row = self.get(node_id)
        return StepView(StepState(row.state), row.handle, row.failure_handled)


def start_run(
    session: Session,
    job: JobPlan,
    *,
    parameters: dict[str, Any],
    request_id: str | None,
    trigger: str,
    priority: int,
) -> tuple[RunRow, Effects]:
    """Create the run and its steps and queue the entry steps; idempotent on request_id."""
    if request_id:
        prior = session.scalar(select(RunRow).where(RunRow.request_id == request_id))
        if prior is not None:
            return prior, Effects()
    now = utcnow()
    run = RunRow(
        id=new_id(),
        job_id=job.job_id,
        job_name=job.name,
        job_version=job.version,
        state=RunState.PENDING.value,
        trigger=trigger,
        parameters=parameters,
        plan=job.plan,
        priority=priority,
        request_id=request_id or None,
        error_message="",
        event_seq=0,
        created_at=now,
    )
    session.add(run)
    effects = Effects()
    tx = RunTx(session, run, effects)
    tx.emit(outbox.RUN_STATE_CHANGED, run_state=RunState.PENDING.value)
    steps: dict[str, StepRow] = {}
    for position, (node_id, node) in enumerate(job.plan["nodes"].items()):
        steps[node_id] = StepRow(
            run_id=run.id,
            node_id=node_id,
            node_type=node["type"],
            position=position,
            state=StepState.PENDING.value,
            attempt=0,
            queue=node.get("queue") or "default",
            error_message="",
            skip_reason="",
            failure_handled=False,
        )
    session.add_all(steps.values())
    for decision in engine.entry_decisions(job.plan):
        tx.queue_step(steps[decision.node_id])
    session.flush()
    return run, effects


def _scope(session: Session, run: RunRow) -> dict[str, Any]:
    rows = session.execute(
        select(StepRow.node_id, StepRow.outputs).where(
            StepRow.run_id == run.id, StepRow.outputs.is_not(None)
        )
    )
    # A list, not the Result: SQLAlchemy 2.1 results have keys(), which dict() would misread.
    outputs: dict[str, Any] = dict(rows.all())
    started = as_utc(run.started_at)
    return {
        "params": run.parameters,
        "steps": outputs,
        "run": {
            "id": run.id,
            "job": run.job_name,
            "trigger": run.trigger,
            "started_at": started.isoformat() if started else None,
        },
    }


def claim_step(
    session: Session,
    run_id: str,
    node_id: str,
    attempt: int,
    *,
    worker: str,
    queue: str,
    task_id: str,
    trace_id: str = "",
) -> tuple[Claim | None, Effects]:
    """Mark a QUEUED step RUNNING for this attempt; None when the message is stale."""
    effects = Effects()
    run = lock_run(session, run_id)
    step = StepCache(session, run_id).get(node_id)
    if (
        run.state in engine.TERMINAL_RUN
        or step.state != StepState.QUEUED
        or step.attempt != attempt
    ):
        return None, effects
    tx = RunTx(session, run, effects)
    if run.state in (RunState.PENDING, RunState.WAITING):
        tx.set_run(RunState.RUNNING)
    tx.set_step(step, StepState.RUNNING, worker=worker)
    session.add(
        ExecutionRow(
            run_id=run_id,
            node_id=node_id,
            attempt=attempt,
            state=StepState.RUNNING.value,
            worker=worker,
            queue=queue,
            task_id=task_id,
            trace_id=trace_id,
            started_at=tx.now,
            error_message="",
        )
    )
    node = run.plan["nodes"][node_id]
    return Claim(node=node, scope=_scope(session, run), attempt=attempt), effects


def finish_step(
    session: Session,
    run_id: str,
    node_id: str,
    attempt: int,
    result: Result,
    *,
    rand: Callable[[], float],
) -> Effects:
    """Record an attempt's result, retry or settle the step, and advance the run."""
    effects = Effects()
    run = lock_run(session, run_id)
    cache = StepCache(session, run_id)
    step = cache.get(node_id)
    execution = session.scalar(
        select(ExecutionRow).where(
            ExecutionRow.run_id == run_id,
            ExecutionRow.node_id == node_id,
            ExecutionRow.attempt == attempt,
        )
    )
    tx = RunTx(session, run, effects)
    final = StepState.SUCCEEDED if result.succeeded else StepState.FAILED
    if execution is not None:
        execution.state = final.value
        execution.ended_at = tx.now
        execution.exit_code = result.exit_code
        execution.error_category = result.error_category
        execution.error_message = result.error_message or ""
        execution.wall_s = result.wall_s
        execution.cpu_user_s = result.cpu_user_s
        execution.cpu_system_s = result.cpu_system_s
        execution.max_rss_kb = result.max_rss_kb
    if step.attempt != attempt or step.state != StepState.RUNNING:
        if execution is not None and step.state == StepState.CANCELLED:
            execution.state = StepState.CANCELLED.value
        return effects  # stale attempt (cancelled, or superseded): its result is ignored
    node = run.plan["nodes"][node_id]
    step.outputs = result.outputs
    step.error_category = result.error_category
    step.error_message = result.error_message or ""
    policy = engine.RetryPolicy.from_node(node)
    if not result.succeeded and policy.should_retry(attempt, result.error_category):
        delay = policy.delay(attempt, rand=rand)
        tx.set_step(
            step,
            StepState.WAITING,
            f"retrying in {delay:.1f}s: {result.error_message or ''}",
            error_category=result.error_category,
            retry_in_s=round(delay, 3),
        )
        tx.queue_step(step, countdown=delay)
        return effects
    step.handle = result.handle
    step.failure_handled = (not result.succeeded) and engine.failure_is_handled(node)
    tx.set_step(
        step,
        final,
        result.error_message or "",
        exit_code=result.exit_code,
        error_category=result.error_category,
        handle=result.handle,
    )
    _advance(tx, cache, [node_id])
    return effects


def _advance(tx: RunTx, cache: StepCache, changed: list[str]) -> None:
    plan = tx.run.plan
    nodes = plan["nodes"]
    children = {c["node"] for n in changed for c in nodes[n].get("children", [])}
    cache.load([*children, *(p["node"] for c in children for p in nodes[c].get("parents", []))])
    decisions: list[Decision] = engine.advance(plan, changed, cache.view)
    for d in decisions:
        step = cache.get(d.node_id)
        if d.state == StepState.QUEUED:
            tx.queue_step(step)
        else:
            step.skip_reason = d.reason
            tx.set_step(step, StepState.SKIPPED, d.reason)
    tx.session.flush()
    open_steps = tx.session.scalar(
        select(func.count())
        .select_from(StepRow)
        .where(StepRow.run_id == tx.run.id, StepRow.state.not_in(TERMINAL_STEP_VALUES))
    )
    if open_steps:
        return
    rows = tx.session.execute(
        select(StepRow.state, StepRow.failure_handled, StepRow.node_id, StepRow.error_message)
        .where(StepRow.run_id == tx.run.id)
        .order_by(StepRow.position)
    ).all()
    outcome = engine.run_outcome((StepState(s), h) for s, h, _n, _m in rows)
    if outcome is None:
        return
    message = ""
    if outcome == RunState.FAILED:
        failed = [(n, m) for s, h, n, m in rows if s == StepState.FAILED and not h]
        message = "; ".join(f"step {n!r} failed: {m}" for n, m in failed[:5])
    tx.set_run(outcome, message)


def cancel_run(session: Session, run_id: str, reason: str) -> tuple[RunRow, Effects]:
    """Cancel every open step and the run; a running process is killed by its worker."""
    effects = Effects()
    run = lock_run(session, run_id)
    if run.state in engine.TERMINAL_RUN:
        return run, effects
    tx = RunTx(session, run, effects)
    message = reason or "cancelled by request"
    for step in session.scalars(
        select(StepRow)
        .where(StepRow.run_id == run_id, StepRow.state.not_in(TERMINAL_STEP_VALUES))
        .order_by(StepRow.position)
    ):
        step.error_category = "CANCELLED" if step.state == StepState.RUNNING else None
        tx.set_step(step, StepState.CANCELLED, message)
    tx.set_run(RunState.CANCELLED, message)
    return run, effects


def step_cancelled(session: Session, run_id: str, node_id: str, attempt: int) -> bool:
    """True when the attempt should stop: the step was cancelled or moved on."""
    row = session.execute(
        select(StepRow.state, StepRow.attempt).where(
            StepRow.run_id == run_id, StepRow.node_id == node_id
        )
    ).first()
    return row is None or row[0] != StepState.RUNNING or row[1] != attempt


def stale_queued(session: Session, *, older_than: datetime, limit: int = 500) -> list[Dispatch]:
    """QUEUED steps whose message may have been lost; re-sending them is safe."""
    rows = session.execute(
        select(StepRow, RunRow.priority)
        .join(RunRow, RunRow.id == StepRow.run_id)
        .where(StepRow.state == StepState.QUEUED, StepRow.queued_at < older_than)
        .limit(limit)
    ).all()
    result = []
    for step, priority in rows:
        result.append(Dispatch(step.run_id, step.node_id, step.attempt, step.queue, priority))
        step.queued_at = utcnow()  # don't resend again on the next sweep
    return result


def requeue_cutoff(seconds: float) -> datetime:
    """The queued_at before which a QUEUED step counts as lost."""
    return utcnow() - timedelta(seconds=seconds)


def mark_worker_lost(session: Session, run_id: str, node_id: str, attempt: int) -> None:
    """Close an attempt whose worker died without a result."""
    session.execute(
        update(ExecutionRow)
        .where(
            ExecutionRow.run_id == run_id,
            ExecutionRow.node_id == node_id,
            ExecutionRow.attempt == attempt,
        )
        .values(state=StepState.FAILED.value, error_category="WORKER_LOST", ended_at=utcnow())
    )


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
        created = datetime.fromisoformat(created_s)
        query = query.where(
            (RunRow.created_at < created) | ((RunRow.created_at == created) & (RunRow.id < last_id))
        )
    rows = list(session.scalars(query))
    token = ""
    if len(rows) > page_size:
        last = rows[page_size - 1]
        token = f"{last.created_at.isoformat()}|{last.id}"
    return rows[:page_size], token
