"""What run events carry for the monitor beyond their typed fields: the queue of a worker
step (queue rates), the node type and wall time at an attempt's end and the job at a run's
end (metrics without a look-up)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.executor import runs
from conveyor.kernel import outbox
from conveyor.kernel.db import Database
from conveyor.kernel.migrate import upgrade
from conveyor.translator.domain import compile_workflow


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'e.db'}")
    upgrade(database)
    yield database
    database.dispose()


def job() -> runs.JobPlan:
    doc = {
        "schema": "conveyor/v1",
        "name": "event-data",
        "nodes": [
            {"id": "a", "type": "action.command", "data": {"argv": ["true"], "queue": "gpu"}},
            {"id": "gate", "type": "logic.condition", "data": {"expression": "1 > 2"}},
            {"id": "never", "type": "action.command", "data": {"argv": ["true"]}},
        ],
        "edges": [
            {"source": "a", "target": "gate"},
            {"source": "gate", "target": "never", "sourceHandle": "true"},
        ],
    }
    compiled = compile_workflow(json.dumps(doc))
    assert compiled.plan is not None, compiled.diagnostics
    return runs.JobPlan(job_id="j-data", name="event-data", version=1, plan=compiled.plan)


def test_events_name_queue_node_type_wall_time_and_job(db: Database) -> None:
    with db.transaction() as session:
        run, _ = runs.start_run(
            session, job(), parameters={}, request_id=None, trigger="MANUAL", priority=0
        )
        run_id = run.id
    with db.transaction() as session:
        claimed, _ = runs.claim_step(
            session, run_id, "a", 1, worker="w1@h", queue="gpu", task_id="t"
        )
        assert claimed is not None
    with db.transaction() as session:
        runs.finish_step(
            session,
            run_id,
            "a",
            1,
            runs.Result(succeeded=True, outputs={}, wall_s=0.5),
            rand=random.random,
        )
    with db.read() as session:
        events = outbox.events_after(session, run_id, 0)
    steps = {
        (e.node_id, e.step_state): e.data for e in events if e.type == outbox.STEP_STATE_CHANGED
    }
    assert steps[("a", "QUEUED")] == {"queue": "gpu"}
    assert steps[("a", "RUNNING")] == {"worker": "w1@h", "queue": "gpu"}
    assert steps[("a", "SUCCEEDED")]["node_type"] == "action.command"
    assert steps[("a", "SUCCEEDED")]["wall_s"] == 0.5
    # An inline step is queued on no broker queue; a skipped step names its type.
    assert "queue" not in steps[("gate", "QUEUED")]
    assert steps[("never", "SKIPPED")] == {"node_type": "action.command"}
    runs_changes = [e for e in events if e.type == outbox.RUN_STATE_CHANGED]
    assert [(e.run_state, e.data) for e in runs_changes] == [
        ("PENDING", {}),
        ("RUNNING", {}),
        ("SUCCEEDED", {"job_name": "event-data"}),
    ]
