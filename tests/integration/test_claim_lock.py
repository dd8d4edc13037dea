"""On PostgreSQL a claim reads its run and step without the run's lock and takes the lock
last (`runs._lock_for_claim`). Whatever commits between the read and the lock - another
claim of the same attempt, a cancel, a run that stopped RUNNING - the claim decides as if it
had held the lock all along, and the run's event sequence stays 1, 2, 3, … without a gap."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, text, update

from conveyor.executor import models, runs
from conveyor.executor.engine import RunState, StepState
from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.kernel.db import Database
from conveyor.kernel.migrate import upgrade
from conveyor.kernel.outbox import RunEventRow as EventRow
from conveyor.translator.domain import compile_workflow
from tests.conftest import POSTGRES_URL
from tests.integration import harness

WIDTH = 8


@pytest.fixture
def pg() -> Iterator[Database]:
    with harness.postgres_database(POSTGRES_URL) as url:
        database = Database(url)
        upgrade(database)
        yield database
        database.dispose()


def fanout() -> runs.JobPlan:
    """start -> WIDTH parallel steps."""
    ids = ["start", *(f"p{i}" for i in range(WIDTH))]
    doc = {
        "schema": "conveyor/v1",
        "name": "claims",
        "nodes": [
            {"id": n, "type": "action.command", "data": {"argv": ["true"]}, "position": {}}
            for n in ids
        ],
        "edges": [{"id": f"e{i}", "source": "start", "target": n} for i, n in enumerate(ids[1:])],
    }
    compiled = compile_workflow(json.dumps(doc))
    assert compiled.plan is not None, compiled.diagnostics
    return runs.JobPlan(job_id="j", name="claims", version=1, plan=compiled.plan)


def claim(db: Database, run_id: str, node_id: str, worker: str = "w") -> runs.Claim | None:
    with db.transaction() as session:
        claimed, _ = runs.claim_step(
            session, run_id, node_id, 1, worker=worker, queue="default", task_id="t"
        )
    return claimed


def fanned_out(db: Database) -> str:
    """A run whose start step ended: the WIDTH steps are QUEUED."""
    with db.transaction() as session:
        run, _ = runs.start_run(
            session, fanout(), parameters={}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    assert claim(db, run_id, "start") is not None
    with db.transaction() as session:
        runs.finish_step(
            session, run_id, "start", 1, runs.Result(succeeded=True, outputs={}), rand=random.random
        )
    return run_id


def sequences(db: Database, run_id: str) -> tuple[list[int], int]:
    """The run's event sequences in order, and the run's own counter."""
    with db.read() as session:
        seqs = list(
            session.scalars(
                select(EventRow.sequence)
                .where(EventRow.run_id == run_id)
                .order_by(EventRow.sequence)
            )
        )
        counter = session.scalar(select(RunRow.event_seq).where(RunRow.id == run_id))
    assert counter is not None
    return seqs, counter


def assert_gap_free(db: Database, run_id: str) -> None:
    seqs, counter = sequences(db, run_id)
    assert seqs == list(range(1, len(seqs) + 1))
    assert counter == len(seqs)


def between_read_and_lock(
    monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]
) -> list[Any]:
    """Run `meanwhile` (its own committed transaction) once, after a claim's unlocked read
    and before it takes the run's lock; returns what the lock step answered."""
    real = runs._lock_for_claim
    answers: list[Any] = []

    def lock_for_claim(*args: Any, **kwargs: Any) -> bool | None:
        if not answers:
            answers.append("pending")
            meanwhile()
        answer = real(*args, **kwargs)
        answers.append(answer)
        return answer

    monkeypatch.setattr(runs, "_lock_for_claim", lock_for_claim)
    return answers


def short_lock_wait(session: Any) -> None:
    """A claim holding the run's lock since its read would block `meanwhile` forever (same
    thread): make that a failure, not a hang."""
    session.execute(text("SET LOCAL lock_timeout = '5s'"))


def test_a_claim_that_loses_the_race_to_another_claim_is_stale(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = fanned_out(pg)
    answers = between_read_and_lock(
        monkeypatch, lambda: claims.append(claim(pg, run_id, "p0", worker="first"))
    )
    claims: list[runs.Claim | None] = []
    assert claim(pg, run_id, "p0", worker="second") is None
    assert claims[0] is not None  # the first claim, made between the read and the lock
    assert answers[1:] == [True, False]
    with pg.read() as session:
        workers = list(
            session.scalars(
                select(ExecutionRow.worker).where(
                    ExecutionRow.run_id == run_id, ExecutionRow.node_id == "p0"
                )
            )
        )
        step = session.scalar(
            select(StepRow).where(StepRow.run_id == run_id, StepRow.node_id == "p0")
        )
    assert workers == ["first"]
    assert step is not None and step.state == StepState.RUNNING
    assert_gap_free(pg, run_id)


def test_a_claim_of_a_step_cancelled_meanwhile_is_stale(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = fanned_out(pg)

    def cancel() -> None:
        with pg.transaction() as session:
            short_lock_wait(session)
            runs.cancel_run(session, run_id, "stop")

    answers = between_read_and_lock(monkeypatch, cancel)
    assert claim(pg, run_id, "p3") is None
    assert answers[1:] == [None]  # the run was no longer RUNNING: decided under the lock
    with pg.read() as session:
        run = session.get(RunRow, run_id)
        executions = session.scalars(
            select(ExecutionRow).where(ExecutionRow.run_id == run_id, ExecutionRow.node_id == "p3")
        ).all()
    assert run is not None and run.state == RunState.CANCELLED
    assert executions == []
    assert_gap_free(pg, run_id)


def test_a_claim_in_a_run_that_stopped_running_meanwhile_starts_it_again(
    pg: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = fanned_out(pg)

    def pause() -> None:
        with pg.transaction() as session:
            short_lock_wait(session)
            session.execute(
                update(RunRow).where(RunRow.id == run_id).values(state=RunState.WAITING.value)
            )

    between_read_and_lock(monkeypatch, pause)
    before, _ = sequences(pg, run_id)
    assert claim(pg, run_id, "p1") is not None
    with pg.read() as session:
        run = session.get(RunRow, run_id)
        step = session.scalar(
            select(StepRow).where(StepRow.run_id == run_id, StepRow.node_id == "p1")
        )
        new = session.execute(
            select(EventRow.type, EventRow.run_state, EventRow.node_id, EventRow.step_state)
            .where(EventRow.run_id == run_id, EventRow.sequence > len(before))
            .order_by(EventRow.sequence)
        ).all()
    assert run is not None and run.state == RunState.RUNNING
    assert step is not None and step.state == StepState.RUNNING
    assert [tuple(r) for r in new] == [
        ("RUN_STATE_CHANGED", "RUNNING", None, None),
        ("STEP_STATE_CHANGED", None, "p1", "RUNNING"),
    ]
    assert_gap_free(pg, run_id)


def test_concurrent_claims_of_one_run_take_distinct_sequences(pg: Database) -> None:
    run_id = fanned_out(pg)
    barrier = threading.Barrier(WIDTH)
    results: dict[str, bool] = {}

    def worker(node_id: str) -> None:
        barrier.wait()
        results[node_id] = claim(pg, run_id, node_id, worker=node_id) is not None

    threads = [threading.Thread(target=worker, args=(f"p{i}",)) for i in range(WIDTH)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {f"p{i}": True for i in range(WIDTH)}
    assert_gap_free(pg, run_id)
    with pg.read() as session:
        running = session.scalars(
            select(StepRow.node_id).where(
                StepRow.run_id == run_id, StepRow.state == StepState.RUNNING.value
            )
        ).all()
    assert sorted(running) == sorted(f"p{i}" for i in range(WIDTH))


def statements_of(db: Database) -> tuple[list[str], Callable[[], None]]:
    """Every SQL statement the engine sends from now on, and a function that stops it."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", before)
    return seen, lambda: event.remove(db.engine, "before_cursor_execute", before)


def test_a_process_new_to_a_run_locks_it_first_and_reads_its_plan_in_that_query(
    pg: Database,
) -> None:
    with pg.transaction() as session:
        run, _ = runs.start_run(
            session, fanout(), parameters={}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    models.forget_plans()  # as in a worker process that has not seen this run
    seen, stop = statements_of(pg)
    try:
        assert claim(pg, run_id, "start") is not None
    finally:
        stop()
    runs_reads = [s for s in seen if s.startswith("SELECT") and "FROM job_runs" in s]
    assert len(runs_reads) == 1, runs_reads
    assert runs_reads[0].endswith("FOR UPDATE") and "job_runs.plan_pb" in runs_reads[0]
    assert not any(s.startswith("UPDATE job_runs SET event_seq") for s in seen)
    assert models.cached_plan(run_id) == fanout().plan
    # From now on the process has the plan: the next claim reads the run without its plan
    # and takes the lock last.
    seen, stop = statements_of(pg)
    try:
        with pg.transaction() as session:
            runs.finish_step(
                session,
                run_id,
                "start",
                1,
                runs.Result(succeeded=True, outputs={}),
                rand=random.random,
            )
        assert claim(pg, run_id, "p0") is not None
    finally:
        stop()
    assert not any("plan_pb" in s for s in seen if "FROM job_runs" in s)
    assert any(s.startswith("UPDATE job_runs SET event_seq") for s in seen)
    assert_gap_free(pg, run_id)
