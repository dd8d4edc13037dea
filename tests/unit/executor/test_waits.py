"""Waiting steps against the executor's tables on SQLite: approvals, retries, sub-workflows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor.executor import runs, waits
from conveyor.executor.models import StepRow
from conveyor.kernel.db import Database
from conveyor.kernel.errors import FailedPrecondition
from conveyor.kernel.ids import utcnow
from conveyor.kernel.migrate import upgrade
from conveyor.translator.domain import compile_workflow


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 't.db'}")
    upgrade(database)
    yield database
    database.dispose()


def job(name: str, nodes: list[dict[str, Any]], edges: list[tuple[str, str]]) -> runs.JobPlan:
    doc = {
        "schema": "conveyor/v1",
        "name": name,
        "nodes": nodes,
        "edges": [{"source": s, "target": t} for s, t in edges],
    }
    result = compile_workflow(json.dumps(doc))
    assert result.plan is not None, result.diagnostics
    return runs.JobPlan(job_id=f"id-{name}", name=name, version=1, plan=result.plan)


GATED = job(
    "gated",
    [
        {"id": "gate", "type": "action.approval", "data": {"message": "ok?"}},
        {"id": "after", "type": "action.command", "data": {"argv": ["true"]}},
    ],
    [("gate", "after")],
)


def start(db: Database, plan: runs.JobPlan, **kwargs: Any) -> str:
    with db.transaction() as session:
        run, _ = runs.start_run(
            session, plan, parameters={}, request_id=None, trigger="MANUAL", priority=0, **kwargs
        )
        return run.id


def claim(db: Database, run_id: str, node_id: str, attempt: int = 1) -> runs.Claim:
    with db.transaction() as session:
        found, _ = runs.claim_step(
            session, run_id, node_id, attempt, worker="w", queue="default", task_id="t"
        )
    assert found is not None
    return found


def state(db: Database, run_id: str) -> tuple[str, dict[str, str]]:
    with db.transaction() as session:
        run = runs.get_run(session, run_id)
        steps, _ = runs.run_steps(session, run_id)
        return run.state, {s.node_id: s.state for s in steps}


def test_approval_waits_and_approve_queues_successor(db: Database) -> None:
    run_id = start(db, GATED)
    claim(db, run_id, "gate")
    with db.transaction() as session:
        effects = waits.begin_approval(session, run_id, "gate", 1, message="ok?", timeout_s=None)
    assert not effects.dispatch
    assert state(db, run_id) == ("WAITING", {"gate": "WAITING", "after": "PENDING"})
    with db.transaction() as session:
        _, effects = waits.decide_approval(
            session, run_id, "gate", approve=True, comment="fine", approver="ann"
        )
    assert [d.node_id for d in effects.dispatch] == ["after"]
    assert state(db, run_id) == ("RUNNING", {"gate": "SUCCEEDED", "after": "QUEUED"})


def test_approval_timeout_via_wake_step(db: Database) -> None:
    run_id = start(db, GATED)
    claim(db, run_id, "gate")
    with db.transaction() as session:
        waits.begin_approval(session, run_id, "gate", 1, message="", timeout_s=60)
    with db.transaction() as session:
        assert waits.due_wakeups(session, now=utcnow()) == []
        assert waits.due_wakeups(session, now=utcnow() + timedelta(seconds=61)) == [
            (run_id, "gate")
        ]
        step = session.query(StepRow).filter_by(run_id=run_id, node_id="gate").one()
        step.wake_at = utcnow() - timedelta(seconds=1)
    with db.transaction() as session:
        waits.wake_step(session, run_id, "gate", rand=lambda: 1.0)
    assert state(db, run_id) == ("FAILED", {"gate": "FAILED", "after": "SKIPPED"})


def test_retry_waits_then_wake_step_queues_next_attempt(db: Database) -> None:
    plan = job(
        "flaky",
        [{"id": "f", "type": "action.command", "data": {"argv": ["false"], "retries": {"max": 1}}}],
        [],
    )
    run_id = start(db, plan)
    claim(db, run_id, "f")
    failed = runs.Result(succeeded=False, outputs={}, error_category="NONZERO_EXIT")
    with db.transaction() as session:
        effects = runs.finish_step(session, run_id, "f", 1, failed, rand=lambda: 1.0)
    assert not effects.dispatch  # no message while the backoff runs
    assert state(db, run_id)[1] == {"f": "WAITING"}
    with db.transaction() as session:
        assert waits.wake_step(session, run_id, "f", rand=lambda: 1.0).dispatch == []  # not due
        step = session.query(StepRow).filter_by(run_id=run_id, node_id="f").one()
        step.wake_at = utcnow() - timedelta(seconds=1)
    with db.transaction() as session:
        effects = waits.wake_step(session, run_id, "f", rand=lambda: 1.0)
    assert [(d.node_id, d.attempt) for d in effects.dispatch] == [("f", 2)]


def test_parent_chain_cycle_and_depth(db: Database) -> None:
    child = job("child", [{"id": "s", "type": "action.subworkflow", "data": {"job": "x"}}], [])
    parent_id = start(db, GATED)
    mid_id = start(db, child, parent_run_id=parent_id, parent_node_id="gate")
    with db.transaction() as session, pytest.raises(FailedPrecondition) as err:
        runs.start_run(
            session,
            GATED,
            parameters={},
            request_id=None,
            trigger="SUBWORKFLOW",
            priority=0,
            parent_run_id=mid_id,
            parent_node_id="s",
        )
    assert "gated -> child -> gated" in err.value.message
    other = job("other", [{"id": "a", "type": "action.command", "data": {"argv": ["true"]}}], [])
    with db.transaction() as session, pytest.raises(FailedPrecondition, match="deeper than 1"):
        runs.start_run(
            session,
            other,
            parameters={},
            request_id=None,
            trigger="SUBWORKFLOW",
            priority=0,
            parent_run_id=mid_id,
            parent_node_id="s",
            max_depth=1,
        )
