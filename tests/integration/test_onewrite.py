"""The commit-time writer (`conveyor.executor.onewrite`) on SQLite and PostgreSQL: what it
writes is what the ORM's flush would have written, in fewer statements on PostgreSQL; a
row gone is an error that leaves everything as it was; what it does not take is left to
the ORM."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import delete, event, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from conveyor.executor import models, onewrite, runs
from conveyor.executor.models import ExecutionRow, RunRow, StepRow
from conveyor.kernel import feed
from conveyor.kernel.db import Database
from conveyor.translator.domain import compile_workflow
from tests.integration import workflows as wf

LENGTH = 5
RESULT = runs.Result(
    succeeded=True, outputs={"exit_code": 0, "stdout": "ok\n"}, exit_code=0, wall_s=0.25
)


def chain_plan() -> runs.JobPlan:
    nodes = [wf.cmd(f"s{i}", ["true"]) for i in range(LENGTH)]
    edges = [(f"s{i}", f"s{i + 1}") for i in range(LENGTH - 1)]
    compiled = compile_workflow(wf.doc("onewrite-chain", nodes, edges))
    assert compiled.plan is not None, compiled.diagnostics
    return runs.JobPlan(job_id="j", name="onewrite-chain", version=1, plan=compiled.plan)


@contextmanager
def without_writer() -> Iterator[None]:
    """The ORM's flush and the outbox write everything, as before the writer."""
    event.remove(Session, "before_commit", onewrite._write_at_commit)
    try:
        yield
    finally:
        event.listen(Session, "before_commit", onewrite._write_at_commit, insert=True)


@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    """The statements sent while the block runs."""
    sent: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def run_chain(db: Database, sent: Callable[[], list[str]] | None = None) -> tuple[str, int]:
    """Start the chain and take every step from claim to success, the end of one and the
    claim of the next in one transaction as a worker hands off; the run id and the number
    of statements the hand-off transactions sent."""
    with db.transaction() as s:
        run, _ = runs.start_run(
            s, chain_plan(), parameters={}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    with db.transaction() as s:
        claim, _ = runs.claim_step(s, run_id, "s0", 1, worker="w", queue="default", task_id="t")
        assert claim is not None
    statements = 0
    for i in range(LENGTH - 1):
        with counting(db) as seen, db.transaction() as s:
            effects = runs.finish_step(s, run_id, f"s{i}", 1, RESULT, rand=random.random)
            (nxt,) = effects.dispatch
            claimed, _ = runs.claim_step(
                s, run_id, nxt.node_id, nxt.attempt, worker="w", queue="default", task_id="t"
            )
            assert claimed is not None
        statements += len(seen)
    with db.transaction() as s:
        runs.finish_step(s, run_id, f"s{LENGTH - 1}", 1, RESULT, rand=random.random)
    return run_id, statements


TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


def _plain(value: Any) -> Any:
    """Times differ between two runs: only whether one is set is compared (SQLite gives
    them back as text)."""
    if isinstance(value, datetime) or (isinstance(value, str) and TIME.match(value)):
        return "<time>"
    return value


def stored(db: Database, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the run left, without ids, run ids and times."""
    queries = {
        "run": "SELECT state, event_seq, error_message, started_at, ended_at FROM job_runs"
        " WHERE id = :r",
        "steps": "SELECT node_id, state, attempt, queue, handle, outputs, error_category,"
        " error_message, skip_reason, failure_handled, queued_at, started_at, ended_at,"
        " wake_at FROM job_run_steps WHERE run_id = :r ORDER BY node_id",
        "executions": "SELECT node_id, attempt, state, worker, queue, task_id, started_at,"
        " ended_at, wall_s, exit_code, error_category, error_message FROM job_executions"
        " WHERE run_id = :r ORDER BY node_id, attempt",
        "events": "SELECT sequence, type, node_id, run_state, step_state, attempt, message,"
        " data FROM run_events WHERE run_id = :r ORDER BY sequence",
        "feed": "SELECT run_sequence, job_name, run_state FROM run_feed WHERE run_id = :r"
        " ORDER BY position",
    }
    with db.engine.connect() as conn:
        return {
            name: [tuple(_plain(v) for v in row) for row in conn.execute(text(sql), {"r": run_id})]
            for name, sql in queries.items()
        }


def test_the_writer_stores_what_the_orm_would(db: Database) -> None:
    models.forget_plans()
    written, with_writer = run_chain(db)
    models.forget_plans()
    with without_writer():
        flushed, with_orm = run_chain(db)
    mine, theirs = stored(db, written), stored(db, flushed)
    assert mine == theirs
    assert mine["run"] == [("SUCCEEDED", theirs["run"][0][1], "", "<time>", "<time>")]
    assert [row[1] for row in mine["steps"]] == ["SUCCEEDED"] * LENGTH
    assert len(mine["executions"]) == LENGTH
    assert [row[0] for row in mine["events"]] == list(range(1, len(mine["events"]) + 1))
    assert [row[2] for row in mine["feed"]] == ["PENDING", "RUNNING", "SUCCEEDED"]
    if db.engine.dialect.name == "postgresql":
        # The run row, both steps, the new attempt and the events in one statement.
        assert with_writer <= with_orm - 3 * (LENGTH - 1)
    else:
        assert with_writer <= with_orm


def started(db: Database) -> str:
    """A chain run whose first step is claimed."""
    models.forget_plans()
    with db.transaction() as s:
        run, _ = runs.start_run(
            s, chain_plan(), parameters={}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    with db.transaction() as s:
        assert runs.claim_step(s, run_id, "s0", 1, worker="w", queue="default", task_id="t")[0]
    return run_id


def test_a_row_gone_is_an_error_and_nothing_is_written(db: Database) -> None:
    run_id = started(db)
    before = stored(db, run_id)
    with pytest.raises(StaleDataError), db.transaction() as s:
        runs.finish_step(s, run_id, "s0", 1, RESULT, rand=random.random)
        # The row the end changed goes behind the ORM's back (no autoflush) before the commit.
        s.connection().execute(
            delete(StepRow.__table__).where(StepRow.run_id == run_id, StepRow.node_id == "s1")
        )
    assert stored(db, run_id) == before


def test_what_the_writer_does_not_take_is_left_to_the_orm(db: Database) -> None:
    """A deleted object is not the plain case: the ORM writes the whole transaction."""
    run_id = started(db)
    with db.transaction() as s:
        execution = s.scalar(select(ExecutionRow).where(ExecutionRow.run_id == run_id))
        assert execution is not None
        runs.finish_step(s, run_id, "s0", 1, RESULT, rand=random.random)
        s.delete(execution)  # pending at the commit with the end's changes
        assert s.deleted and s.dirty
    with db.read() as s:
        row = s.get(RunRow, run_id)
        assert row is not None
        query = select(StepRow.node_id, StepRow.state).where(StepRow.run_id == run_id)
        states = dict(s.execute(query).all())
        attempts = s.scalars(select(ExecutionRow).where(ExecutionRow.run_id == run_id)).all()
        sequences = s.scalars(
            text("SELECT sequence FROM run_events WHERE run_id = :r ORDER BY sequence"),
            {"r": run_id},
        ).all()
    assert (states["s0"], states["s1"]) == ("SUCCEEDED", "QUEUED")
    assert attempts == []
    assert list(sequences) == list(range(1, row.event_seq + 1))


def test_an_attempt_closed_in_a_transaction_reads_closed_in_it(db: Database) -> None:
    """The close of an attempt's row waits for a flush; a query that flushes sees it."""
    run_id = started(db)
    with db.transaction() as s:
        runs.finish_step(s, run_id, "s0", 1, RESULT, rand=random.random)
        state, code = s.execute(
            select(ExecutionRow.state, ExecutionRow.exit_code).where(
                ExecutionRow.run_id == run_id, ExecutionRow.node_id == "s0"
            )
        ).one()
    assert (state, code) == ("SUCCEEDED", 0)


def test_an_attempt_is_closed_when_the_orm_writes_the_transaction(db: Database) -> None:
    """A transaction the writer does not take (here: a changed row of another table) still
    closes the attempt, with the ORM's flush."""
    run_id = started(db)
    with db.transaction() as s:
        head = s.get(feed.RunFeedHead, feed.HEAD_ID)
        assert head is not None
        runs.finish_step(s, run_id, "s0", 1, RESULT, rand=random.random)
        head.position = head.position  # in the session's dirty set: not the plain case
        assert head in s.dirty
    with db.read() as s:
        execution = s.scalar(
            select(ExecutionRow).where(ExecutionRow.run_id == run_id, ExecutionRow.node_id == "s0")
        )
        step = s.scalar(select(StepRow).where(StepRow.run_id == run_id, StepRow.node_id == "s0"))
    assert execution is not None and step is not None
    assert (execution.state, execution.exit_code, execution.wall_s) == ("SUCCEEDED", 0, 0.25)
    assert step.state == "SUCCEEDED"


def test_json_null_is_stored_as_the_orm_stores_it(db: Database) -> None:
    """A JSON column the model does not map None to SQL NULL keeps JSON null, written by
    the writer as by the ORM's flush."""
    run_id = started(db)

    def clear_outputs(node_id: str) -> None:
        with db.transaction() as s:
            runs.lock_run(s, run_id)
            step = runs.StepCache.of(s, run_id).get(node_id)
            step.outputs = None

    clear_outputs("s1")
    with without_writer():
        clear_outputs("s2")
    with db.engine.connect() as conn:
        stored_as = dict(
            conn.execute(
                text(
                    "SELECT node_id, outputs IS NULL FROM job_run_steps"
                    " WHERE run_id = :r AND node_id IN ('s1', 's2')"
                ),
                {"r": run_id},
            ).all()
        )
    assert stored_as == {"s1": False, "s2": False}


def test_a_small_runs_start_is_one_statement_on_postgresql(db: Database) -> None:
    """The run, its steps, its first events and its feed row, written at commit."""
    models.forget_plans()
    with counting(db) as sent, db.transaction() as s:
        run, effects = runs.start_run(
            s, chain_plan(), parameters={}, request_id="once", trigger="MANUAL", priority=0
        )
        run_id = run.id
    assert [d.node_id for d in effects.dispatch] == ["s0"]
    if db.engine.dialect.name == "postgresql":  # the request id's look-up, then one write
        assert [st.split()[0] for st in sent] == ["SELECT", "WITH"]
    rows = stored(db, run_id)
    assert rows["run"] == [("PENDING", 2, "", None, None)]
    assert [(r[0], r[1], r[2]) for r in rows["steps"]] == [("s0", "QUEUED", 1)] + [
        (f"s{i}", "PENDING", 0) for i in range(1, LENGTH)
    ]
    assert [(r[1], r[3], r[4]) for r in rows["events"]] == [
        ("RUN_STATE_CHANGED", "PENDING", None),
        ("STEP_STATE_CHANGED", None, "QUEUED"),
    ]
    assert rows["feed"] == [(1, "onewrite-chain", "PENDING")]
    # The unique request id holds: a second start with it fails the commit.
    with pytest.raises(IntegrityError), db.transaction() as s:
        s.add(
            RunRow(
                id="another",
                job_id="j",
                job_name="x",
                job_version=1,
                state="PENDING",
                trigger="MANUAL",
                parameters={},
                request_id="once",
                created_at=datetime.now(UTC),
            )
        )


def test_a_nul_character_in_json_is_left_to_the_orm(db: Database) -> None:
    """PostgreSQL's JSON functions refuse NUL, which a json column keeps: such a commit is
    written by the ORM, and the outputs read back as they were."""
    run_id = started(db)
    outputs = {"exit_code": 0, "stdout": "a\x00b"}
    nul = runs.Result(succeeded=True, outputs=outputs, exit_code=0, wall_s=0.25)
    with db.transaction() as s:
        runs.finish_step(s, run_id, "s0", 1, nul, rand=random.random)
    with db.read() as s:
        step = s.scalar(select(StepRow).where(StepRow.run_id == run_id, StepRow.node_id == "s0"))
        assert step is not None
    assert (step.state, step.outputs) == ("SUCCEEDED", outputs)
