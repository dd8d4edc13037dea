"""The executor's unit-of-work functions: start, claim, finish and cancel steps and runs.

Each function takes a session inside an open transaction, locks the run row first (so a run's
state changes and event sequence numbers are serialised), and returns the effects to carry
out after commit: events to publish and step messages to send to Celery.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, String, and_, bindparam, case, func, select, update
from sqlalchemy.orm import Session, defer
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.sql.elements import BindParameter

from conveyor.executor import (
    engine,
    inline,
    onewrite,
    refs,
)
from conveyor.executor.effects import Claim, Dispatch, Effects, JobPlan, Result
from conveyor.executor.engine import Decision, RunState, StepState, StepView
from conveyor.executor.models import ExecutionRow, RunRow, StepRow, cached_plan
from conveyor.executor.queries import get_run, list_runs, run_steps
from conveyor.executor.subruns import (
    MAX_SUBWORKFLOW_DEPTH,
    check_parent_chain,
    child_result,
)
from conveyor.kernel import feed, outbox
from conveyor.kernel.db import is_one_of_param
from conveyor.kernel.errors import FailedPrecondition, NotFound
from conveyor.kernel.ids import as_utc, new_id, utcnow
from conveyor.kernel.outbox import Event
from conveyor.shared import nodetypes as nt

# The effect and result types, the sub-workflow checks and the read side live in their own
# modules; they are re-exported as part of this module's interface.
__all__ = [
    "MAX_SUBWORKFLOW_DEPTH",
    "Claim",
    "Dispatch",
    "Effects",
    "JobPlan",
    "Result",
    "RunTx",
    "StepCache",
    "body_nodes",
    "cancel_run",
    "check_parent_chain",
    "child_result",
    "claim_step",
    "finish_step",
    "get_run",
    "keep_rendered_inputs",
    "list_runs",
    "lock_run",
    "notify_parent",
    "refresh_activity",
    "requeue_cutoff",
    "run_steps",
    "settle_attempt",
    "stale_queued",
    "start_run",
    "started_run_steps",
    "step_cancelled",
]

TERMINAL_STEP_VALUES = [s.value for s in engine.TERMINAL_STEP]
WORKER_LOST = "WORKER_LOST"


class RunTx:
    """The locked run within one transaction: state changes that emit outbox events."""

    def __init__(self, session: Session, run: RunRow, effects: Effects) -> None:
        self.session = session
        self.run = run
        self.effects = effects
        self.now = utcnow()
        self._inline: list[StepRow] = []
        self._draining = False

    def emit(self, type_: str, **fields: Any) -> None:
        """Append the run's next event to the outbox."""
        self.run.event_seq += 1
        self.record_event(
            Event(
                run_id=self.run.id,
                sequence=self.run.event_seq,
                type=type_,
                time=self.now,
                **fields,
            )
        )

    def record_event(self, ev: Event) -> None:
        """Write an event whose sequence is taken (`emit`) and publish it after commit."""
        outbox.append(self.session, ev)
        self.effects.events.append(ev)
        type_ = ev.type
        if type_ == outbox.RUN_STATE_CHANGED:
            run = self.run
            feed.record(
                self.session, ev, job_id=run.job_id, job_name=run.job_name, trigger=run.trigger
            )

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
        # A run's end names its job: the monitor's run metrics need nothing else.
        data = {"job_name": self.run.job_name} if state in engine.TERMINAL_RUN else {}
        self.emit(outbox.RUN_STATE_CHANGED, run_state=state.value, message=message, data=data)

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

    def queue_step(self, step: StepRow) -> None:
        """Mark a step QUEUED for its next attempt and schedule its message.

        A step that needs no worker (`conveyor.executor.inline`) gets no message: it is
        evaluated by `drain`, still within this transaction.
        """
        step.attempt += 1
        if inline.is_inline(self.run.plan["nodes"][step.node_id]):
            self.set_step(step, StepState.QUEUED)
            self._inline.append(step)
            return
        # The queue in the event: the monitor counts steps queued and started per queue.
        self.set_step(step, StepState.QUEUED, queue=step.queue)
        self.effects.dispatch.append(
            Dispatch(self.run.id, step.node_id, step.attempt, step.queue, self.run.priority)
        )

    def has_inline(self) -> bool:
        """Whether steps that need no worker are queued for `drain`."""
        return bool(self._inline)

    def drain(self) -> None:
        """Evaluate the queued inline steps, and those their ends make ready, in order.

        Called once an operation has applied all its decisions; a nested call (from the end
        of an inline step) returns at once and the outer loop goes on, so a long chain of
        branches is a loop, not a recursion.
        """
        if self._draining:
            return
        self._draining = True
        try:
            while self._inline:
                step = self._inline.pop(0)
                if step.state == StepState.QUEUED:
                    self._evaluate_inline(step)
        finally:
            self._draining = False

    def _evaluate_inline(self, step: StepRow) -> None:
        run = self.run
        if run.state in (RunState.PENDING, RunState.WAITING):
            self.set_run(RunState.RUNNING)
        self.set_step(step, StepState.RUNNING, worker=inline.INLINE_WORKER)
        self.session.add(
            ExecutionRow(
                run_id=run.id,
                node_id=step.node_id,
                attempt=step.attempt,
                state=StepState.RUNNING.value,
                worker=inline.INLINE_WORKER,
                queue=step.queue,
                task_id="",
                trace_id="",
                started_at=self.now,
                error_message="",
            )
        )
        self.session.flush()
        result = inline.evaluate(
            run.plan["nodes"][step.node_id],
            run_id=run.id,
            node_id=step.node_id,
            attempt=step.attempt,
            scope=_upstream_scope(_scope(self.session, run, [step.node_id]), run, step.node_id),
        )
        settle_attempt(self, step.node_id, step.attempt, result, rand=random.random)


_LOCKED = "conveyor.executor.locked_runs"
_CREATED = "conveyor.executor.created_runs"
_CACHES = "conveyor.executor.step_caches"


_WITHOUT_PLAN = (defer(RunRow.plan_data), defer(RunRow.plan_pb))
_WITH_TYPED_PLAN = (defer(RunRow.plan_data),)


def _plan_loading(run_id: str) -> tuple[Any, ...]:
    """Loader options for a run row read to work on it: the plan snapshot is left in the
    database when this process has the run's plan decoded already, and otherwise comes in
    the same query (a run new to this process needs it next), not in a second one."""
    return _WITHOUT_PLAN if cached_plan(run_id) is not None else _WITH_TYPED_PLAN


# The statements of every step's claim and end, built once: a statement built anew costs
# its construction and its cache key on every execution (about 0.15 ms each in CPython,
# several per step), a built one only its parameters.
_RUN_BY_ID: BindParameter[str] = bindparam("run_id", type_=String())
_READ_RUN = {
    loading: select(RunRow).options(*loading).where(RunRow.id == _RUN_BY_ID)
    for loading in (_WITHOUT_PLAN, _WITH_TYPED_PLAN)
}
_LOCK_RUN = {loading: query.with_for_update() for loading, query in _READ_RUN.items()}
_REFRESH = {"populate_existing": True}


_BY_DIALECT: dict[tuple[str, str], Any] = {}


def _statement(session: Session, name: str, build: Callable[[], Any]) -> Any:
    """A statement built once per database kind."""
    key = (name, session.get_bind().dialect.name)
    statement = _BY_DIALECT.get(key)
    if statement is None:
        statement = _BY_DIALECT[key] = build()
    return statement


def lock_run(session: Session, run_id: str, *, refresh: bool = False) -> RunRow:
    """Load and lock a run row (SELECT … FOR UPDATE; SQLite's write lock is already held).

    The lock lasts until the transaction ends, so a second call in the same transaction (a
    step's end, then the claim of the successor it hands off) returns the row it holds.
    `refresh`: the row was read without the lock earlier in the transaction; overwrite
    what was read."""
    locked: dict[str, RunRow] = session.info.setdefault(_LOCKED, {})
    run = locked.get(run_id)
    if run is not None:
        return run
    run = session.scalar(
        _LOCK_RUN[_plan_loading(run_id)],
        {"run_id": run_id},
        execution_options=_REFRESH if refresh else {},
    )
    if run is None:
        raise NotFound(f"run {run_id!r} not found", metadata={"run_id": run_id})
    locked[run_id] = run
    return run


def _read_run(session: Session, run_id: str) -> RunRow:
    """A run row read without locking it (`claim_step` locks it last)."""
    run = session.scalar(_READ_RUN[_plan_loading(run_id)], {"run_id": run_id})
    if run is None:
        raise NotFound(f"run {run_id!r} not found", metadata={"run_id": run_id})
    return run


# `_lock_for_claim`'s statements: lock the run and take the next event sequence if it is
# RUNNING; move a step still QUEUED for the attempt to RUNNING; give a sequence back.
_TAKE_SEQUENCE = (
    update(RunRow)
    .where(RunRow.id == _RUN_BY_ID)
    .values(event_seq=RunRow.event_seq + case((RunRow.state == RunState.RUNNING.value, 1), else_=0))
    .returning(RunRow.event_seq, RunRow.state)
)
_CLAIM_QUEUED = (
    update(StepRow)
    .where(
        StepRow.id == bindparam("step_id"),
        StepRow.state == StepState.QUEUED.value,
        StepRow.attempt == bindparam("b_attempt"),
    )
    .values(state=StepState.RUNNING.value, started_at=bindparam("b_started_at"))
)
_GIVE_BACK = update(RunRow).where(RunRow.id == _RUN_BY_ID).values(event_seq=bindparam("sequence"))


def _lock_for_claim(tx: RunTx, step: StepRow, worker: str, queue: str) -> bool | None:
    """Lock a run read as RUNNING and claim `step` (read QUEUED for this attempt) in it.

    One UPDATE locks the run and takes the claim's event sequence, a second moves the step
    to RUNNING only if it is still QUEUED for the attempt. True: claimed (the caller adds the
    attempt's execution row); False: the step moved on meanwhile (stale message); None: the
    run is no longer RUNNING - it is locked and re-read, and the caller decides as usual.
    """
    session, run = tx.session, tx.run
    running = RunState.RUNNING.value
    connection = session.connection()  # Core statements: no object in the session changes
    sequence, state = connection.execute(_TAKE_SEQUENCE, {"run_id": run.id}).one()
    session.info.setdefault(_LOCKED, {})[run.id] = run
    if state != running:
        session.refresh(run)
        session.refresh(step)
        return None
    started = step.started_at or tx.now
    moved = connection.execute(
        _CLAIM_QUEUED, {"step_id": step.id, "b_attempt": step.attempt, "b_started_at": started}
    ).rowcount
    if not moved:  # claimed or cancelled since it was read: give the sequence back
        connection.execute(_GIVE_BACK, {"run_id": run.id, "sequence": sequence - 1})
        set_committed_value(run, "event_seq", sequence - 1)
        session.refresh(step)
        return False
    set_committed_value(run, "event_seq", sequence)
    set_committed_value(step, "state", running)
    set_committed_value(step, "started_at", started)
    tx.record_event(
        Event(
            run_id=run.id,
            sequence=sequence,
            type=outbox.STEP_STATE_CHANGED,
            time=tx.now,
            node_id=step.node_id,
            step_state=running,
            attempt=step.attempt,
            message="",
            data={"worker": worker, "queue": queue},
        )
    )
    return True


class StepCache:
    """Step rows of one run, loaded in batches on demand within a transaction."""

    def __init__(self, session: Session, run_id: str) -> None:
        self._session = session
        self._run_id = run_id
        self._rows: dict[str, StepRow] = {}
        self._views: dict[str, StepView] = {}

    @classmethod
    def of(cls, session: Session, run_id: str) -> StepCache:
        """The transaction's cache of a run's steps: the operations of one transaction on a
        locked run (a step's end, the claim of its successor) share what was loaded."""
        caches: dict[str, StepCache] = session.info.setdefault(_CACHES, {})
        cache = caches.get(run_id)
        if cache is None:
            cache = caches[run_id] = cls(session, run_id)
        return cache

    def load(self, node_ids: Iterable[str]) -> None:
        """Fetch the rows not loaded yet in one query."""
        missing = [n for n in set(node_ids) if n not in self._rows]
        session = self._session
        query = _statement(
            session,
            "steps",
            lambda: (
                select(StepRow)
                .options(defer(StepRow.outputs))  # loaded on access; joins only need states
                .where(
                    StepRow.run_id == _RUN_BY_ID, is_one_of_param(session, StepRow.node_id, "ids")
                )
            ),
        )
        for chunk in _chunks(missing):
            for row in session.scalars(query, {"run_id": self._run_id, "ids": chunk}):
                self._rows[row.node_id] = row

    def has_all(self, node_ids: Iterable[str]) -> bool:
        """Whether every one of these step rows is loaded."""
        return all(n in self._rows for n in node_ids)

    def get(self, node_id: str) -> StepRow:
        """One step row."""
        if node_id not in self._rows:
            self.load([node_id])
        return self._rows[node_id]

    def load_views(self, node_ids: Iterable[str]) -> None:
        """Fetch just the engine's view (state, handle) of steps not loaded yet.

        A join's parents are read on every parent's end; plain tuples keep that cheap.
        """
        missing = [n for n in set(node_ids) if n not in self._rows and n not in self._views]
        session = self._session
        query = _statement(
            session,
            "views",
            lambda: select(
                StepRow.node_id,
                StepRow.state,
                StepRow.handle,
                StepRow.failure_handled,
                StepRow.skip_reason,
            ).where(StepRow.run_id == _RUN_BY_ID, is_one_of_param(session, StepRow.node_id, "ids")),
        )
        for chunk in _chunks(missing):
            for node_id, state, handle, handled, reason in session.execute(
                query, {"run_id": self._run_id, "ids": chunk}
            ):
                self._views[node_id] = StepView(
                    StepState(state), handle, bool(handled), reason or ""
                )

    def counted_edges(self, plan: Mapping[str, Any], node_id: str) -> Counter[engine.Edge] | None:
        """How many incoming edges of a wide join of state-only parents (`is_counted_join`)
        have each status, counted by state in one query; None for any other node."""
        if not self.is_counted_join(plan, node_id):
            return None
        nodes = plan["nodes"]
        parents = nodes[node_id]["parents"]
        sample = nodes[parents[0]["node"]]
        edges: Counter[engine.Edge] = Counter()
        others = self._not_parents(plan, node_id)
        session = self._session
        if len(others) <= FEW_OTHERS:
            # The join of (nearly) every step of the run: count the run's steps but the few
            # others - a scan of the run's rows, no list of a thousand parents to send.
            query = _statement(
                session,
                "count_but",
                lambda: _count_by_state(StepRow.node_id.not_in(bindparam("ids", expanding=True))),
            )
            batches = [others]
        else:
            query = _statement(
                session,
                "count_of",
                lambda: _count_by_state(is_one_of_param(session, StepRow.node_id, "ids")),
            )
            batches = list(_chunks(sorted(p["node"] for p in parents)))
        counts: Counter[tuple[str, str]] = Counter()
        # No flush first: what the database holds is counted, then the parents changed in
        # this transaction and not written yet are moved from their old states to their
        # new ones. The changes are written at commit with the rest, not now.
        with session.no_autoflush:
            for batch in batches:
                for state, reason, count in session.execute(
                    query, {"run_id": self._run_id, "ids": batch}
                ):
                    counts[(state, reason or "")] += count
        parent_ids = plan_fact(plan, "parent_set", node_id, _parent_set)
        for obj in session.dirty:
            if (
                isinstance(obj, StepRow)
                and obj.run_id == self._run_id
                and obj.node_id in parent_ids
            ):
                old = instance_state(obj).committed_state
                if "state" in old or "skip_reason" in old:
                    was = (old.get("state", obj.state), old.get("skip_reason", obj.skip_reason))
                    counts[(was[0], was[1] or "")] -= 1
                    counts[(obj.state, obj.skip_reason or "")] += 1
        for (state, reason), count in counts.items():
            if count > 0:
                view = StepView(StepState(state), None, False, reason)
                edges[engine.edge_status(sample, view, None)] += count
        return edges

    def _not_parents(self, plan: Mapping[str, Any], node_id: str) -> list[str]:
        """The run's steps that are not parents of `node_id` (itself included)."""
        return plan_fact(plan, "not_parents", node_id, _not_parents)

    def is_counted_join(self, plan: Mapping[str, Any], node_id: str) -> bool:
        """`is_counted_join`, worked out once per node and plan in this process."""
        return plan_fact(plan, "counted_join", node_id, is_counted_join)

    def view(self, node_id: str) -> StepView:
        """The engine's view of a step."""
        row = self._rows.get(node_id)
        if row is None and node_id in self._views:
            return self._views[node_id]
        row = self.get(node_id)
        return StepView(
            StepState(row.state), row.handle, row.failure_handled, row.skip_reason or ""
        )


def _count_by_state(of_steps: ColumnElement[bool]) -> Any:
    """Count a run's steps (`of_steps` among them) by state and skip reason."""
    return (
        select(StepRow.state, StepRow.skip_reason, func.count())
        .where(StepRow.run_id == _RUN_BY_ID, of_steps)
        .group_by(StepRow.state, StepRow.skip_reason)
    )


# A run of at most this many steps is read whole at a step's end (one query of a few rows).
SMALL_RUN = 16
# A counted join with at most this many steps of the run besides its parents counts the
# run's steps but those, not its parents one by one.
FEW_OTHERS = 32
WIDE_JOIN = 16  # parents from which a join's edges are counted by state, not read each


T = TypeVar("T")

# Facts derived from a plan alone, kept per plan object: plans are immutable and shared by
# the runs of a job version (`models.decoded_plan`), and a wide run's every step end asks the
# same questions of the same nodes. The entry holds the plan, so its id is not reused.
PLAN_FACTS = 64
_FACTS: OrderedDict[int, tuple[Mapping[str, Any], dict[tuple[str, str], Any]]] = OrderedDict()
_FACTS_LOCK = threading.Lock()


def plan_fact(
    plan: Mapping[str, Any], kind: str, node_id: str, compute: Callable[[Any, str], T]
) -> T:
    """`compute(plan, node_id)`, remembered for this plan object."""
    key = id(plan)
    with _FACTS_LOCK:
        entry = _FACTS.get(key)
        if entry is not None and entry[0] is plan:
            _FACTS.move_to_end(key)
            facts = entry[1]
            if (kind, node_id) in facts:
                return cast(T, facts[(kind, node_id)])
        else:
            facts = {}
            _FACTS[key] = (plan, facts)
            while len(_FACTS) > PLAN_FACTS:
                _FACTS.popitem(last=False)
    value = compute(plan, node_id)
    facts[(kind, node_id)] = value
    return value


def _approvals(plan: Mapping[str, Any], _node_id: str) -> bool:
    return any(n["type"] == nt.APPROVAL for n in plan["nodes"].values())


def _parent_set(plan: Mapping[str, Any], node_id: str) -> frozenset[str]:
    return frozenset(p["node"] for p in plan["nodes"][node_id].get("parents", []))


def _not_parents(plan: Mapping[str, Any], node_id: str) -> list[str]:
    parents = _parent_set(plan, node_id)
    return sorted(n for n in plan["nodes"] if n not in parents)


def is_counted_join(plan: Mapping[str, Any], node_id: str) -> bool:
    """A join with at least `WIDE_JOIN` parents, each joined by a state-only edge.

    Every parent's end asks whether the join is ready; reading each parent's state would
    make a fan-out of N quadratic (N ends x N reads), so such a join's edges are counted."""
    nodes = plan["nodes"]
    parents = nodes[node_id].get("parents", [])
    return (
        len(parents) >= WIDE_JOIN
        # A parent joined twice has an edge per handle: its edges are read one by one.
        and len({p["node"] for p in parents}) == len(parents)
        and all(engine.state_only_edge(nodes[p["node"]], p.get("handle")) for p in parents)
    )


def _chunks(node_ids: list[str]) -> Iterator[list[str]]:
    """Step ids in lists short enough for one query's parameters (SQLite's limit)."""
    for i in range(0, len(node_ids), 500):
        yield node_ids[i : i + 500]


def _parents_to_read(
    cache: StepCache, plan: Mapping[str, Any], children: Iterable[str]
) -> list[str]:
    """The parents of `children` whose states `_advance` reads one by one."""
    nodes = plan["nodes"]
    return [
        p["node"]
        for c in children
        if not cache.is_counted_join(plan, c)
        for p in nodes[c].get("parents", [])
    ]


def start_run(
    session: Session,
    job: JobPlan,
    *,
    parameters: dict[str, Any],
    request_id: str | None,
    trigger: str,
    priority: int,
    parent_run_id: str | None = None,
    parent_node_id: str | None = None,
    max_depth: int = MAX_SUBWORKFLOW_DEPTH,
    queue_entry: bool = True,
    started_by: str = "",
) -> tuple[RunRow, Effects]:
    """Create the run and its steps and queue the entry steps; idempotent on request_id.

    `started_by` names the caller (a token's name) on the run and its first event."""
    if request_id:
        prior = run_by_request_id(session, request_id)
        if prior is not None:
            return prior, Effects()
    if parent_run_id:
        check_parent_chain(session, parent_run_id, job, max_depth=max_depth)
    now = utcnow()
    run = RunRow(
        id=new_id(),
        job_id=job.job_id,
        job_name=job.name,
        job_version=job.version,
        state=RunState.PENDING.value,
        trigger=trigger,
        parameters=parameters,
        priority=priority,
        request_id=request_id or None,
        error_message="",
        event_seq=0,
        created_at=now,
        parent_run_id=parent_run_id or None,
        parent_node_id=parent_node_id or None,
        started_by=started_by or None,
    )
    run.keep_plan(job.plan, job.plan_pb)
    session.add(run)
    effects = Effects()
    tx = RunTx(session, run, effects)
    by = f"started by {started_by}" if started_by else ""
    tx.emit(outbox.RUN_STATE_CHANGED, run_state=RunState.PENDING.value, message=by)
    steps: dict[str, StepRow] = {}
    # Positions follow the plan's topological order: the order of its "nodes", which the
    # typed plan carries as a list.
    for position, node_id in enumerate(job.plan["nodes"]):
        node = job.plan["nodes"][node_id]
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
    session.info.setdefault(_CREATED, {})[run.id] = list(steps.values())
    if queue_entry:
        for decision in engine.entry_decisions(job.plan):
            tx.queue_step(steps[decision.node_id])
        if tx.has_inline():
            # The run and its steps are written before an inline step's attempt row: the
            # ORM's flush of all three at once does not order them by their foreign keys.
            session.flush()
            tx.drain()
    # No flush: the rows are written at commit, in one statement on PostgreSQL when the run
    # is small (`conveyor.executor.onewrite`); a lost race on request_id fails the commit.
    return run, effects


def started_run_steps(
    session: Session, run: RunRow
) -> tuple[list[StepRow], dict[str, list[ExecutionRow]]]:
    """`run_steps` for a run just started: its steps are the rows `start_run` made in this
    session, so they are not read back.

    Attempts are read only when there can be any: a step's attempt is counted up when it is
    queued and an attempt row is made only when a queued step is claimed, so while every
    step is PENDING, or QUEUED for its first attempt, the run has none. A run this session
    did not create (a repeated request_id's) is read like any other.
    """
    created: list[StepRow] | None = session.info.get(_CREATED, {}).get(run.id)
    if created is None:
        return run_steps(session, run.id)
    unclaimed = (StepState.PENDING.value, StepState.QUEUED.value)
    if all(s.state in unclaimed and s.attempt <= 1 for s in created):
        return list(created), {}
    session.flush()
    executions: dict[str, list[ExecutionRow]] = {}
    for ex in session.scalars(
        select(ExecutionRow).where(ExecutionRow.run_id == run.id).order_by(ExecutionRow.attempt)
    ):
        executions.setdefault(ex.node_id, []).append(ex)
    return list(created), executions


RETRYABLE_RUN_STATES = frozenset({RunState.FAILED.value, RunState.CANCELLED.value})


def retry_run(
    session: Session, source_id: str, *, request_id: str | None, started_by: str = ""
) -> tuple[RunRow, Effects]:
    """Resume a failed or cancelled run as a new run that reuses its succeeded steps.

    The new run has the source's plan snapshot, parameters and priority. A step that
    SUCCEEDED in the source keeps its outputs and branch handle and is not run again (a step
    inside a foreach only with its foreach); every other step starts PENDING. The entry steps
    that were not reused are queued, and the engine decides the children of the reused steps
    exactly as if those steps had just succeeded, so the run goes on from where it stopped.
    """
    if request_id:
        prior = run_by_request_id(session, request_id)
        if prior is not None:
            return prior, Effects()
    source = get_run(session, source_id)
    if source.state not in RETRYABLE_RUN_STATES:
        raise FailedPrecondition(
            f"run {source_id!r} is {source.state}; only a FAILED or CANCELLED run can be retried",
            metadata={"run_id": source_id, "state": source.state},
        )
    plan = source.plan
    nodes = plan["nodes"]
    old = {
        row.node_id: row
        for row in session.scalars(select(StepRow).where(StepRow.run_id == source.id))
    }

    def reusable(node_id: str) -> bool:
        row = old.get(node_id)
        if row is None or row.state != StepState.SUCCEEDED.value:
            return False
        group = nodes[node_id].get("group")
        return group is None or reusable(str(group))

    reused = [n for n in nodes if reusable(n)]
    job = JobPlan(source.job_id, source.job_name, source.job_version, plan, source.plan_pb)
    run, effects = start_run(
        session,
        job,
        parameters=dict(source.parameters),
        request_id=request_id,
        trigger="RETRY",
        priority=source.priority,
        queue_entry=False,
        started_by=started_by,
    )
    run.retry_of = source.id
    tx = RunTx(session, run, effects)
    cache = StepCache.of(session, run.id)
    cache.load(nodes)
    for node_id in reused:
        src, step = old[node_id], cache.get(node_id)
        step.outputs = src.outputs
        step.handle = src.handle
        step.child_run_id = src.child_run_id
        step.started_at = src.started_at
        tx.set_step(step, StepState.SUCCEEDED, f"reused from run {source.id}", handle=src.handle)
    done = set(reused)
    for decision in engine.entry_decisions(plan):
        if decision.node_id not in done:
            tx.queue_step(cache.get(decision.node_id))
    _advance(tx, cache, [n for n in reused if nodes[n].get("group") is None])
    tx.drain()
    return run, effects


def notify_parent(tx: RunTx) -> None:
    """When a sub-workflow run ends, settle the parent step waiting for it."""
    run = tx.run
    if not run.parent_run_id or run.state not in engine.TERMINAL_RUN:
        return
    parent = tx.session.scalar(
        select(RunRow).where(RunRow.id == run.parent_run_id).with_for_update()
    )
    if parent is None:
        return
    step = StepCache.of(tx.session, parent.id).get(run.parent_node_id or "")
    if step.state != StepState.WAITING or step.child_run_id != run.id:
        return
    settle_attempt(
        RunTx(tx.session, parent, tx.effects),
        step.node_id,
        step.attempt,
        child_result(tx.session, run),
        rand=random.random,
        expect=StepState.WAITING,
    )


def _upstream_scope(scope: dict[str, Any], run: RunRow, node_id: str) -> dict[str, Any]:
    """`scope` with `steps` narrowed to the node's upstream steps, as a worker narrows it: a
    template sees only what the graph says ran before its node."""
    steps = scope["steps"]
    upstream = engine.upstream_among(run.plan, node_id, steps) if steps else set()
    return {**scope, "steps": {k: v for k, v in steps.items() if k in upstream}}


def _scope(session: Session, run: RunRow, node_ids: list[str]) -> dict[str, Any]:
    """The template scope of `node_ids` (a step, or a foreach and its body): the outputs of
    only the steps their templates name (`conveyor.executor.refs`), not the whole run's."""
    nodes = run.plan["nodes"]
    names = refs.cached_referenced_steps(run.id, node_ids[0], [nodes[n] for n in node_ids])
    outputs: dict[str, Any] = {}
    if names is None or names:
        query = select(StepRow.node_id, StepRow.outputs).where(
            StepRow.run_id == run.id, StepRow.outputs.is_not(None)
        )
        if names is not None:
            query = query.where(StepRow.node_id.in_(sorted(names)))
        # A list, not the Result: SQLAlchemy 2.1 results have keys(), which dict() would
        # misread.
        outputs = dict(session.execute(query).all())
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
    """Mark a QUEUED step RUNNING for this attempt; None when the message is stale.

    On PostgreSQL a claim in a RUNNING run takes the run's lock last (`_lock_for_claim`):
    the steps of a wide run are claimed while others hold the lock, which a claim then holds
    for three statements and the commit instead of the whole transaction. The first claim
    of a run in a process locks first (see below)."""
    effects = Effects()
    # A process without the run's plan in memory has claimed nothing in it yet: most likely
    # this is the run's first step, while the run is still PENDING, which the late lock
    # would only re-read under the lock. Locking first spares those two statements.
    late = (
        run_id not in session.info.get(_LOCKED, {})
        and session.bind is not None
        and (session.bind.dialect.name == "postgresql")
        and cached_plan(run_id) is not None
    )
    run = _read_run(session, run_id) if late else lock_run(session, run_id)
    step = StepCache.of(session, run_id).get(node_id)
    if (
        run.state in engine.TERMINAL_RUN
        or step.state != StepState.QUEUED
        or step.attempt != attempt
    ):
        # A step moves on from QUEUED-for-this-attempt only once its message was sent, and
        # a terminal run never changes: this is as true without the lock as with it.
        return None, effects
    tx = RunTx(session, run, effects)
    claimed = False
    if late and run.state == RunState.RUNNING:
        outcome = _lock_for_claim(tx, step, worker, queue)
        if outcome is False:
            return None, effects
        claimed = outcome is True
    elif late:
        run = lock_run(session, run_id, refresh=True)
        session.refresh(step)
    if not claimed:
        if (
            run.state in engine.TERMINAL_RUN
            or step.state != StepState.QUEUED
            or step.attempt != attempt
        ):
            return None, effects
        if run.state in (RunState.PENDING, RunState.WAITING):
            tx.set_run(RunState.RUNNING)
        tx.set_step(step, StepState.RUNNING, worker=worker, queue=queue or None)
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
    nodes = run.plan["nodes"]
    node = nodes[node_id]
    body = (
        {n: nodes[n] for n in body_nodes(run.plan, node_id)} if node["type"] == nt.FOREACH else {}
    )
    scope = _scope(session, run, [node_id, *body])
    return Claim(node=node, scope=scope, attempt=attempt, body=body), effects


def finish_step(
    session: Session,
    run_id: str,
    node_id: str,
    attempt: int,
    result: Result,
    *,
    rand: Callable[[], float],
    expect: StepState = StepState.RUNNING,
) -> Effects:
    """Record an attempt's result, retry or settle the step, and advance the run."""
    effects = Effects()
    run = lock_run(session, run_id)
    settle_attempt(RunTx(session, run, effects), node_id, attempt, result, rand=rand, expect=expect)
    return effects


def settle_attempt(
    tx: RunTx,
    node_id: str,
    attempt: int,
    result: Result,
    *,
    rand: Callable[[], float],
    expect: StepState = StepState.RUNNING,
) -> None:
    """`finish_step` on a run already locked in `tx`; `expect` is the step's current state.

    Steps that need no worker made ready by this end are evaluated before it returns.
    """
    _settle(tx, node_id, attempt, result, rand=rand, expect=expect)
    tx.drain()


def _settle(
    tx: RunTx,
    node_id: str,
    attempt: int,
    result: Result,
    *,
    rand: Callable[[], float],
    expect: StepState,
) -> None:
    session, run = tx.session, tx.run
    nodes = run.plan["nodes"]
    cache = StepCache.of(session, run.id)
    # Everything `_advance` may read, fetched before anything changes: the step, its
    # children and their parents (two queries, and no flush before them). A small run is
    # read whole in one query: then whether the run is over is known without another.
    children = [c["node"] for c in nodes[node_id].get("children", [])]
    if len(nodes) <= SMALL_RUN:
        cache.load(nodes)
    else:
        cache.load([node_id, *children])
        cache.load_views(_parents_to_read(cache, run.plan, children))
    step = cache.get(node_id)
    final = StepState.SUCCEEDED if result.succeeded else StepState.FAILED
    current = step.attempt == attempt and step.state == expect
    if current:
        _close_execution(session, run.id, node_id, attempt, final, result, tx.now)
    else:
        execution = session.scalar(
            select(ExecutionRow).where(_attempt_row(run.id, node_id, attempt))
        )
        if execution is not None:
            _close_execution(session, run.id, node_id, attempt, final, result, tx.now)
            if step.state == StepState.CANCELLED:
                execution.state = StepState.CANCELLED.value
        return  # stale attempt (cancelled, or superseded): its result is ignored
    node = nodes[node_id]
    step.outputs = result.outputs
    step.error_category = result.error_category
    step.error_message = result.error_message or ""
    step.wake_at = None
    policy = engine.RetryPolicy.from_node(node)
    retryable = node["type"] != nt.APPROVAL
    if not result.succeeded and retryable and result.reattempt:
        tx.queue_step(step)
        return
    if not result.succeeded and retryable and policy.should_retry(attempt, result.error_category):
        # A lost worker is not the step's fault: its next attempt is queued at once.
        lost = result.error_category == WORKER_LOST
        delay = 0.0 if lost else policy.delay(attempt, rand=rand)
        if delay <= 0:
            tx.queue_step(step)
            return
        # The sweeper queues the next attempt when it is due: no broker message and no
        # worker slot is held while the step waits.
        step.wake_at = tx.now + timedelta(seconds=delay)
        tx.set_step(
            step,
            StepState.WAITING,
            f"retrying in {delay:.1f}s: {result.error_message or ''}",
            error_category=result.error_category,
            retry_in_s=round(delay, 3),
            node_type=step.node_type,
            wall_s=result.wall_s,
        )
        refresh_activity(tx)
        return
    step.handle = result.handle
    step.failure_handled = (not result.succeeded) and engine.failure_is_handled(node)
    # The node's type and the attempt's wall time: what the monitor's step metrics need.
    tx.set_step(
        step,
        final,
        result.error_message or "",
        exit_code=result.exit_code,
        error_category=result.error_category,
        handle=result.handle,
        node_type=step.node_type,
        wall_s=result.wall_s,
    )
    if node["type"] == nt.FOREACH:
        _settle_body(tx, cache, node_id, result.body or {})
    _advance(tx, cache, [node_id])


def _attempt_row(run_id: str, node_id: str, attempt: int) -> ColumnElement[bool]:
    """The `job_executions` row of one attempt."""
    return and_(
        ExecutionRow.run_id == run_id,
        ExecutionRow.node_id == node_id,
        ExecutionRow.attempt == attempt,
    )


def _close_execution(
    session: Session,
    run_id: str,
    node_id: str,
    attempt: int,
    state: StepState,
    result: Result,
    now: datetime,
) -> None:
    """Record how an attempt ended on its execution row, if the row is still RUNNING.

    An attempt already closed (lost with its worker, handed back) keeps how it was closed: a
    late result of a superseded attempt changes nothing. One UPDATE, no read first; an
    execution object in the session is updated with it."""
    values: dict[str, Any] = {
        "state": state.value,
        "ended_at": now,
        "exit_code": result.exit_code,
        "error_category": result.error_category,
        "error_message": result.error_message or "",
        "wall_s": result.wall_s,
        "cpu_user_s": result.cpu_user_s,
        "cpu_system_s": result.cpu_system_s,
        "max_rss_kb": result.max_rss_kb,
    }
    if result.rendered_inputs is not None:  # a wait's end keeps what its start recorded
        values["rendered_inputs"] = result.rendered_inputs
    if not _attempt_in_session(session, run_id, node_id, attempt):
        # Nothing in the session to update with it: the UPDATE waits for the transaction's
        # next flush or its commit, where it is a part of the commit's one statement.
        onewrite.close_attempt(session, run_id, node_id, attempt, values)
        return
    session.execute(
        update(ExecutionRow)
        .where(
            _attempt_row(run_id, node_id, attempt),
            ExecutionRow.state == StepState.RUNNING.value,
        )
        .values(**values)
        .execution_options(synchronize_session="fetch")
    )


_SEARCHED_OBJECTS = 64


def _attempt_in_session(session: Session, run_id: str, node_id: str, attempt: int) -> bool:
    """Whether the session holds the execution row of this attempt (made or read in this
    transaction), which an UPDATE of the row must keep in step. A session of many objects
    (the start of a wide run) is not searched: it is taken to hold it."""
    if len(session.identity_map) > _SEARCHED_OBJECTS:
        return True
    return any(
        isinstance(obj, ExecutionRow)
        and obj.run_id == run_id
        and obj.node_id == node_id
        and obj.attempt == attempt
        for obj in session.identity_map.values()
    )


def keep_rendered_inputs(
    session: Session, run_id: str, node_id: str, attempt: int, inputs: str
) -> None:
    """Record what a waiting attempt (approval, sub-workflow) rendered; its end keeps it."""
    session.execute(
        update(ExecutionRow)
        .where(_attempt_row(run_id, node_id, attempt))
        .values(rendered_inputs=inputs)
    )


def body_nodes(plan: Mapping[str, Any], foreach_id: str) -> list[str]:
    """Every node inside a foreach, nested bodies included, in plan order."""
    nodes = plan["nodes"]
    found: list[str] = []
    todo = [foreach_id]
    while todo:
        for member in nodes[todo.pop()].get("body") or []:
            found.append(member)
            if nodes[member]["type"] == nt.FOREACH:
                todo.append(member)
    return found


def _settle_body(
    tx: RunTx, cache: StepCache, foreach_id: str, summary: Mapping[str, Mapping[str, Any]]
) -> None:
    """Record how the body nodes ended; the foreach step carries the outcome that counts."""
    members = body_nodes(tx.run.plan, foreach_id)
    cache.load(members)
    for member in members:
        step = cache.get(member)
        if step.state in engine.TERMINAL_STEP:
            continue
        info = summary.get(member) or {}
        state = StepState(info.get("state") or StepState.SKIPPED)
        message = str(info.get("message") or "")
        if state == StepState.SKIPPED:
            step.skip_reason = message or "foreach ran no item"
        step.error_category = info.get("category")
        step.error_message = message if state == StepState.FAILED else ""
        step.failure_handled = True
        tx.set_step(step, state, message)


def refresh_activity(tx: RunTx) -> None:
    """RUNNING <-> WAITING: a run waits when only approvals are pending."""
    if tx.run.state not in (RunState.RUNNING, RunState.WAITING):
        return
    if tx.run.state == RunState.RUNNING and not plan_fact(tx.run.plan, "approvals", "", _approvals):
        return  # nothing can make it wait: spare the query on every step end
    tx.session.flush()
    rows = tx.session.execute(
        select(StepRow.state, StepRow.node_type, func.count())
        .where(
            StepRow.run_id == tx.run.id,
            StepRow.state.in_([StepState.QUEUED, StepState.RUNNING, StepState.WAITING]),
        )
        .group_by(StepRow.state, StepRow.node_type)
    ).all()
    approvals = sum(
        n for state, kind, n in rows if state == StepState.WAITING and kind == nt.APPROVAL
    )
    active = sum(n for _s, _k, n in rows) - approvals
    if approvals and not active:
        tx.set_run(RunState.WAITING)
    elif active and tx.run.state == RunState.WAITING:
        tx.set_run(RunState.RUNNING)


def _advance(tx: RunTx, cache: StepCache, changed: list[str]) -> None:
    plan = tx.run.plan
    nodes = plan["nodes"]
    children = {c["node"] for n in changed for c in nodes[n].get("children", [])}
    cache.load(children)
    cache.load_views(_parents_to_read(cache, plan, children))
    decisions: list[Decision] = engine.advance(
        plan, changed, cache.view, lambda node_id: cache.counted_edges(plan, node_id)
    )
    for d in decisions:
        step = cache.get(d.node_id)
        if d.state == StepState.QUEUED:
            tx.queue_step(step)
        else:
            step.skip_reason = d.reason
            tx.set_step(step, StepState.SKIPPED, d.reason, node_type=step.node_type)
            if step.node_type == nt.FOREACH:
                _settle_body(tx, cache, step.node_id, {})
    # A child still open (queued now, or a join waiting for other parents) means the run
    # goes on: no need to count its open steps.
    if any(cache.view(c).state not in engine.TERMINAL_STEP for c in children):
        refresh_activity(tx)
        return
    rows = _steps_if_over(tx, cache)
    if rows is None:
        refresh_activity(tx)
        return
    outcome = engine.run_outcome((StepState(s), h) for s, h, _n, _m in rows)
    if outcome is None:
        return
    message = ""
    if outcome == RunState.FAILED:
        failed = [(n, m) for s, h, n, m in rows if s == StepState.FAILED and not h]
        message = "; ".join(f"step {n!r} failed: {m}" for n, m in failed[:5])
    tx.set_run(outcome, message)
    notify_parent(tx)


def _steps_if_over(tx: RunTx, cache: StepCache) -> list[tuple[Any, bool, str, str]] | None:
    """(state, failure handled, node id, error message) of every step in plan order when
    none is open any more, else None: from the rows in hand when the transaction read them
    all (a small run), else by a count and, once it is zero, a read of every step."""
    nodes = tx.run.plan["nodes"]
    if cache.has_all(nodes):
        steps = sorted((cache.get(n) for n in nodes), key=lambda r: r.position)
        if any(StepState(r.state) not in engine.TERMINAL_STEP for r in steps):
            return None
        return [(r.state, bool(r.failure_handled), r.node_id, r.error_message) for r in steps]
    tx.session.flush()
    open_steps = tx.session.scalar(
        select(func.count())
        .select_from(StepRow)
        .where(StepRow.run_id == tx.run.id, StepRow.state.not_in(TERMINAL_STEP_VALUES))
    )
    if open_steps:
        return None
    return [
        (s, bool(h), n, m)
        for s, h, n, m in tx.session.execute(
            select(StepRow.state, StepRow.failure_handled, StepRow.node_id, StepRow.error_message)
            .where(StepRow.run_id == tx.run.id)
            .order_by(StepRow.position)
        )
    ]


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
        if step.child_run_id and step.state == StepState.WAITING:
            effects.cancel_runs.append(step.child_run_id)
        step.wake_at = None
        tx.set_step(step, StepState.CANCELLED, message)
    tx.set_run(RunState.CANCELLED, message)
    notify_parent(tx)
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


def run_by_request_id(session: Session, request_id: str) -> RunRow | None:
    """The run a StartRun with this idempotency key created, if any."""
    return session.scalar(select(RunRow).where(RunRow.request_id == request_id))
