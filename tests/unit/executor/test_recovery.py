"""Recovery: lost attempts re-attempted at once, results recorded across a database outage,
committed work answered as success whatever the broker does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from conveyor.executor import liveness, runs
from conveyor.executor.api import ExecutorServicer
from conveyor.executor.models import ExecutionRow
from conveyor.executor.worker import RecordFailed, WorkerRuntime
from conveyor.kernel.db import Database
from conveyor.kernel.errors import Unavailable
from conveyor.kernel.ids import utcnow
from conveyor.kernel.migrate import upgrade
from conveyor.kernel.settings import Settings
from conveyor.translator.domain import compile_workflow


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    upgrade(database)
    yield database
    database.dispose()


def job(data: dict[str, Any]) -> runs.JobPlan:
    doc = {
        "schema": "conveyor/v1",
        "name": "recovery",
        "nodes": [{"id": "work", "type": "action.command", "data": {"argv": ["true"], **data}}],
        "edges": [],
    }
    result = compile_workflow(json.dumps(doc))
    assert result.plan is not None, result.diagnostics
    return runs.JobPlan(job_id="id-recovery", name="recovery", version=1, plan=result.plan)


def start_and_claim(db: Database, plan: runs.JobPlan) -> str:
    with db.transaction() as session:
        run, _ = runs.start_run(
            session, plan, parameters={}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    claim(db, run_id, 1)
    return run_id


def claim(db: Database, run_id: str, attempt: int) -> None:
    with db.transaction() as session:
        found, _ = runs.claim_step(
            session, run_id, "work", attempt, worker="w1", queue="default", task_id="t"
        )
    assert found is not None


def go_silent(db: Database, run_id: str) -> None:
    with db.transaction() as session:
        session.execute(
            update(ExecutionRow)
            .where(ExecutionRow.run_id == run_id)
            .values(started_at=utcnow() - timedelta(minutes=5), heartbeat_at=None)
        )


def step(db: Database, run_id: str) -> tuple[str, int, str]:
    with db.transaction() as session:
        rows, _ = runs.run_steps(session, run_id)
        run = runs.get_run(session, run_id)
        return rows[0].state, rows[0].attempt, run.state


def reap(db: Database, reattempts: int) -> list[runs.Effects]:
    done: list[runs.Effects] = []
    liveness.reap_lost(db, lost_after_s=5, after_commit=done.append, reattempts=reattempts)
    return done


def test_lost_attempt_is_reattempted_at_once_whatever_the_retry_policy(db: Database) -> None:
    run_id = start_and_claim(db, job({}))  # no retries
    for attempt in (1, 2):
        go_silent(db, run_id)
        effects = reap(db, reattempts=2)
        assert [(d.node_id, d.attempt) for e in effects for d in e.dispatch] == [
            ("work", attempt + 1)
        ]
        assert step(db, run_id) == ("QUEUED", attempt + 1, "RUNNING")
        claim(db, run_id, attempt + 1)
    go_silent(db, run_id)  # a third loss: the retry policy (none) decides
    assert [d for e in reap(db, reattempts=2) for d in e.dispatch] == []
    assert step(db, run_id) == ("FAILED", 3, "FAILED")


def test_lost_attempt_with_retries_is_queued_without_backoff(db: Database) -> None:
    run_id = start_and_claim(db, job({"retries": {"max": 2, "backoff_s": 600}}))
    go_silent(db, run_id)
    effects = reap(db, reattempts=0)
    assert [d.attempt for e in effects for d in e.dispatch] == [2]
    assert step(db, run_id) == ("QUEUED", 2, "RUNNING")


def test_a_live_attempt_is_not_reaped(db: Database) -> None:
    run_id = start_and_claim(db, job({}))
    assert reap(db, reattempts=2) == []
    assert step(db, run_id) == ("RUNNING", 1, "RUNNING")


class FlakyDatabase:
    """A database whose first `failures` transactions fail as if the server were down."""

    def __init__(self, db: Database, failures: int) -> None:
        self._db = db
        self.failures = failures
        self.tries = 0

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        self.tries += 1
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))
        with self._db.transaction() as session:
            yield session


class Sink:
    def save(self, *args: Any) -> str:
        return "mem://"


class BrokenBus:
    def publish(self, events: Any) -> None:
        raise ConnectionError("event bus down")


class BrokenBroker:
    def send_task(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")


def runtime(db: Any, **settings: Any) -> WorkerRuntime:
    return WorkerRuntime(
        settings=Settings(**settings),
        db=db,
        bus=BrokenBus(),  # type: ignore[arg-type]
        app=BrokenBroker(),  # type: ignore[arg-type]
        artifacts=Sink(),
    )


def test_result_is_recorded_across_a_database_outage(db: Database) -> None:
    run_id = start_and_claim(db, job({}))
    flaky = FlakyDatabase(db, failures=3)
    worker = runtime(flaky, record_retry_s=30)
    result = runs.Result(succeeded=True, outputs={"exit_code": 0})
    seen: list[bool] = []

    def record(session: Session, retried: bool) -> runs.Effects:
        seen.append(retried)
        return runs.finish_step(session, run_id, "work", 1, result, rand=lambda: 0.0)

    worker.durably("record", record)
    assert flaky.tries == 4 and seen == [True]
    assert step(db, run_id) == ("SUCCEEDED", 1, "SUCCEEDED")


def test_recording_gives_up_after_the_retry_time(db: Database) -> None:
    flaky = FlakyDatabase(db, failures=10**6)
    worker = runtime(flaky, record_retry_s=0.6)
    with pytest.raises(RecordFailed):
        worker.durably("record", lambda session, retried: None)
    assert flaky.tries >= 2


def test_worker_after_commit_survives_broker_and_bus_down(db: Database) -> None:
    worker = runtime(db)
    effects = runs.Effects(dispatch=[runs.Dispatch("r", "n", 1, "default")])
    worker.after_commit(effects)  # logged, not raised: the sweeper re-sends QUEUED steps


def test_start_run_answers_success_once_committed_with_the_broker_down(db: Database) -> None:
    settings = Settings(translator_addr="127.0.0.1:1")

    async def go() -> tuple[str, Any]:
        servicer = ExecutorServicer(
            settings=settings,
            db=db,
            bus=BrokenBus(),  # type: ignore[arg-type]
            app=BrokenBroker(),  # type: ignore[arg-type]
        )
        plan = job({})

        def create() -> str:
            with db.transaction() as session:
                run, effects = runs.start_run(
                    session, plan, parameters={}, request_id="r1", trigger="MANUAL", priority=0
                )
                run_id = run.id
            servicer._after_commit(effects)
            return run_id

        run_id = await servicer._unit(create)

        def down() -> None:
            raise OperationalError("SELECT", {}, ConnectionRefusedError("refused"))

        try:
            await servicer._unit(down)
        except Unavailable as exc:
            return run_id, exc
        return run_id, None

    run_id, error = asyncio.run(go())
    assert step(db, run_id) == ("QUEUED", 1, "PENDING")
    assert isinstance(error, Unavailable) and error.reason == "DATABASE_UNAVAILABLE"


def test_shutdown_hands_running_attempts_back_as_new_attempts(db: Database) -> None:
    run_id = start_and_claim(db, job({}))  # no retries: a hand-back is not a failure
    worker = runtime(db, shutdown_grace_s=0)
    worker.heartbeats.add((run_id, "work", 1))
    assert worker._handoff_candidate(runs.Effects(), "default") is None
    timer = worker.begin_shutdown(0)
    assert timer is not None
    timer.join(timeout=30)
    assert worker.begin_shutdown(0) is None  # once only
    assert step(db, run_id) == ("QUEUED", 2, "RUNNING")
    with db.transaction() as session:
        first = session.scalars(
            select(ExecutionRow).where(ExecutionRow.run_id == run_id, ExecutionRow.attempt == 1)
        ).one()
        assert first.error_category == "WORKER_LOST"
        assert "handed back" in first.error_message
    # The attempt's late result changes nothing.
    with db.transaction() as session:
        late = runs.finish_step(
            session,
            run_id,
            "work",
            1,
            runs.Result(succeeded=False, outputs={}, error_category="CANCELLED"),
            rand=lambda: 0.0,
        )
    assert late.events == []
    with db.transaction() as session:
        first = session.scalars(
            select(ExecutionRow).where(ExecutionRow.run_id == run_id, ExecutionRow.attempt == 1)
        ).one()
        assert first.error_category == "WORKER_LOST"
