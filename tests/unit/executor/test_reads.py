"""On SQLite the executor's reads (GetRun, ListRuns, a worker's cancel check) do not wait for
a writer: they run while another transaction holds the write lock."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text

from conveyor.executor import runs, worker
from conveyor.executor.api import ExecutorServicer
from conveyor.executor.v1 import executor_service_pb2, run_pb2
from conveyor.executor.worker import WorkerRuntime
from conveyor.kernel.bus import InProcessBus
from conveyor.kernel.db import Database
from conveyor.kernel.migrate import upgrade
from conveyor.kernel.settings import Settings
from conveyor.translator.domain import compile_workflow

T = TypeVar("T")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'r.db'}")
    upgrade(database)
    yield database
    database.dispose()


def running_step(db: Database) -> str:
    doc = {
        "schema": "conveyor/v1",
        "name": "reads",
        "nodes": [{"id": "work", "type": "action.command", "data": {"argv": ["true"]}}],
        "edges": [],
    }
    result = compile_workflow(json.dumps(doc))
    assert result.plan is not None, result.diagnostics
    plan = runs.JobPlan(job_id="id-reads", name="reads", version=1, plan=result.plan)
    with db.transaction() as session:
        run, _ = runs.start_run(
            session, plan, parameters={}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    with db.transaction() as session:
        found, _ = runs.claim_step(
            session, run_id, "work", 1, worker="w1", queue="default", task_id="t"
        )
    assert found is not None
    return run_id


def while_a_writer_holds_the_lock(db: Database, read: Callable[[], T]) -> T:
    """`read()` while another thread's transaction holds SQLite's write lock (BEGIN IMMEDIATE
    and an uncommitted write); fails if the writer let go before the read returned."""
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with db.transaction() as session:
            session.execute(text("UPDATE job_runs SET priority = priority"))
            holding.set()
            release.wait(120)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(30)
        value = read()
        assert thread.is_alive(), "the writer must still hold its transaction"
    finally:
        release.set()
        thread.join()
    return value


def test_get_run_and_list_runs_read_while_a_write_is_open(db: Database) -> None:
    run_id = running_step(db)

    def read() -> tuple[Any, Any]:
        async def go() -> tuple[Any, Any]:
            servicer = ExecutorServicer(  # in the loop: its translator channel needs one
                settings=Settings(translator_addr="127.0.0.1:1"),
                db=db,
                bus=InProcessBus(),
                app=object(),  # type: ignore[arg-type]
            )
            got = await servicer.GetRun(executor_service_pb2.GetRunRequest(run_id=run_id), None)
            listed = await servicer.ListRuns(executor_service_pb2.ListRunsRequest(), None)
            return got, listed

        return asyncio.run(go())

    got, listed = while_a_writer_holds_the_lock(db, read)
    assert got.run.run_id == run_id
    assert got.run.state == run_pb2.RUN_STATE_RUNNING
    assert [r.run_id for r in listed.runs] == [run_id]


def test_cancel_check_reads_while_a_write_is_open(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = running_step(db)
    monkeypatch.setattr(worker, "CANCEL_POLL_S", 0.0)  # ask on every call
    runtime = WorkerRuntime(
        settings=Settings(),
        db=db,
        bus=InProcessBus(),
        app=object(),  # type: ignore[arg-type]
        artifacts=object(),
    )
    check = runtime._cancel_check(run_id, "work", 1)
    assert while_a_writer_holds_the_lock(db, check) is False
    with db.transaction() as session:
        runs.cancel_run(session, run_id, "stop")
    assert while_a_writer_holds_the_lock(db, check) is True
